"""Adaptive DPM-Solver-12 / 23 with a PID step-size controller, as k-diffusion's
``sample_dpm_adaptive``."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import torch
from torch import Tensor

from ._exponential import lambda_, sigma_of_lambda
from .base import CountingDenoiser, Solver

# k-diffusion's PIDStepSizeController(eps=1e-8): 1 / (error + eps) keeps error = 0 finite.
_PID_EPS = 1e-8


class PIDController:
    """k-diffusion's ``PIDStepSizeController``: a PID controller on the step size in ``lambda_``.

    With inverse errors ``e_k = 1 / (err_k + 1e-8)`` of the current and the two last accepted
    steps and ``b1 = (p + i + d) / k``, ``b2 = -(p + 2 d) / k``, ``b3 = d / k`` (``k`` the
    order of the error estimate), the step-size factor is
    ``f = 1 + atan(e_0^b1 e_1^b2 e_2^b3 - 1)`` (the ``atan`` limiter keeps ``f`` in
    ``[1 - pi/4, 1 + pi/2)``); the step is accepted if ``f >= accept_safety``, and ``h``
    becomes ``f h`` either way (Soderlind 2003).
    """

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float,
                 accept_safety: float) -> None:
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.errs: list[float] = []

    def propose_step(self, error: float) -> bool:
        inv_error = 1 / (float(error) + _PID_EPS)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2] = self.errs[1]
            self.errs[1] = self.errs[0]
        self.h *= factor
        return accept


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


class DPMAdaptive(Solver):
    """Adaptive DPM-Solver-12 / 23 (Lu et al. 2022, Sec. 3.4 and Appendix C), as k-diffusion's
    ``sample_dpm_adaptive`` (``DPMSolver.dpm_solver_adaptive``, ``eta = 0``).

    In noise prediction ``eps(x, lambda_) = (x - D(x, sigma)) / sigma``, ``lambda_ = -log sigma``,
    a trial step ``s -> t = min(s + h, lambda_end)`` computes an embedded pair (formulas of
    ``DPMSolver``, k-diffusion's ``dpm_solver_{1,2,3}_step``):

    - ``order = 2``: ``x_low`` = DPM-Solver-1, ``x_high`` = DPM-Solver-2 (``r1 = 1/2``);
    - ``order = 3``: ``x_low`` = DPM-Solver-2 with ``r1 = 1/3``, ``x_high`` = DPM-Solver-3
      (``r1 = 1/3``, ``r2 = 2/3``), sharing the stage at ``s + h / 3``.

    The scaled error ``E = ||(x_low - x_high) / delta||_2 / sqrt(numel(x))`` with
    ``delta = max(atol, rtol max(|x_low|, |x_prev|))`` (``x_prev`` the last accepted
    ``x_low``; the norm runs over the WHOLE batch, so all samples share one step size) drives
    the :class:`PIDController` (error order ``order``); an accepted step sets ``x = x_high``.

    labkit's grid protocol: each interval ``[sigmas[i], sigmas[i+1]]`` with
    ``sigmas[i+1] > 0`` is integrated adaptively from ``lambda_i`` to ``lambda_{i+1}`` (the last
    trial step of an interval is clipped to its end). The controller (``h``, error history,
    ``x_prev``) carries over from one interval to the next and restarts at ``i = 0`` or
    non-consecutive steps; the grid ``[sigma_max, sigma_min]`` therefore reproduces
    ``sample_dpm_adaptive(model, x, sigma_min, sigma_max, ...)``. The step to
    ``sigma_{i+1} = 0`` returns ``D(x_i, sigma_i)`` (one call). Each interval is integrated to
    its end: k-diffusion stops once less than ``1e-5`` in ``lambda_`` is left, which on a fine
    grid (intervals shorter than that) would skip every interval; on a single long interval
    the two agree unless k-diffusion stops short (then by ``O(1e-5)`` relative). As in
    k-diffusion, a rejected trial re-evaluates ``eps`` at its start (``order`` calls per trial,
    accepted or not).

    Declared ``order = None``: the error is set by ``rtol``/``atol``, not by a grid (measured
    with ``atol = rtol`` from 1e-3 to 1e-7, sigma 2 -> 0.05: max global error 0.05-2.6 times
    ``rtol``, log-log slope 0.96-1.0, 0.78 for ``order = 3`` on a Gaussian; see
    ``docs/solvers.md``). ``nfe_per_step`` is the calls per controller
    trial (``order``); the calls per grid interval vary with the tolerances.
    ``solver.stats`` holds k-diffusion's ``info`` for the last run: ``steps`` (trials),
    ``nfe``, ``n_accept``, ``n_reject``.

    Parameters
    ----------
    order : int
        2 (DPM-Solver-12) or 3 (DPM-Solver-23, default).
    rtol, atol : float
        Relative and absolute tolerances, ``> 0`` (defaults 0.05, 0.0078 as k-diffusion).
    h_init : float
        First trial step in ``lambda_``, ``> 0`` (default 0.05).
    pcoeff, icoeff, dcoeff : float
        PID coefficients (defaults 0, 1, 0: a pure integral controller);
        ``pcoeff + icoeff + dcoeff > 0``, else the step never adapts.
    accept_safety : float
        Accept a trial if the proposed factor is at least this, in ``[0, 1]`` (default 0.81).

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
    Model Sampling in Around 10 Steps", 2022, arXiv:2206.00927, Sec. 3.4 and Appendix C;
    Soderlind, "Digital filters in adaptive time-stepping", ACM TOMS 29 (2003);
    Crowson, k-diffusion 0.1.1 (``sample_dpm_adaptive``, ``PIDStepSizeController``).
    """

    name = "dpm_adaptive"
    order = None
    nfe_per_step = 3

    def __init__(self, order: int = 3, rtol: float = 0.05, atol: float = 0.0078,
                 h_init: float = 0.05, pcoeff: float = 0.0, icoeff: float = 1.0,
                 dcoeff: float = 0.0, accept_safety: float = 0.81, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(order, bool) or not isinstance(order, Integral):
            raise TypeError(f"order must be an int (2 or 3), got {type(order).__name__}")
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order}")
        values = {name: _real(name, value) for name, value in
                  [("rtol", rtol), ("atol", atol), ("h_init", h_init), ("pcoeff", pcoeff),
                   ("icoeff", icoeff), ("dcoeff", dcoeff), ("accept_safety", accept_safety)]}
        for name in ("rtol", "atol", "h_init"):
            if values[name] <= 0:
                raise ValueError(f"{name} must be > 0, got {values[name]}")
        if values["pcoeff"] + values["icoeff"] + values["dcoeff"] <= 0:
            raise ValueError(f"pcoeff + icoeff + dcoeff must be > 0 (else the step size never "
                             f"adapts), got {values['pcoeff']}, {values['icoeff']}, "
                             f"{values['dcoeff']}")
        if not 0 <= values["accept_safety"] <= 1:
            raise ValueError(f"accept_safety must be in [0, 1], got {values['accept_safety']}")
        self.dpm_order = int(order)
        self.nfe_per_step = order                      # type: ignore[misc]  # calls per trial
        self.rtol, self.atol, self.h_init = values["rtol"], values["atol"], values["h_init"]
        self.pcoeff, self.icoeff, self.dcoeff = values["pcoeff"], values["icoeff"], values["dcoeff"]
        self.accept_safety = values["accept_safety"]
        self.stats = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        self._pid: PIDController | None = None
        self._x_prev: Tensor | None = None
        self._last_i: int | None = None

    def __repr__(self) -> str:
        return (f"DPMAdaptive(order={self.dpm_order}, rtol={self.rtol:g}, atol={self.atol:g}, "
                f"h_init={self.h_init:g})")

    @staticmethod
    def _eps(denoiser: CountingDenoiser, x: Tensor, t: Tensor) -> Tensor:
        return (x - denoiser(x, sigma_of_lambda(t))) / sigma_of_lambda(t)

    def _trial(self, denoiser: CountingDenoiser, x: Tensor, s: Tensor,
               t: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_low, x_high)`` over ``s -> t``, in k-diffusion's arithmetic."""
        h = t - s
        eps = self._eps(denoiser, x, s)
        # DPM-Solver-1, or the first stage of DPM-Solver-2 / 3 at s + r1 h.
        r1 = 1 / 2 if self.dpm_order == 2 else 1 / 3
        s1 = s + r1 * h
        u1 = x - sigma_of_lambda(s1) * (r1 * h).expm1() * eps
        eps_r1 = self._eps(denoiser, u1, s1)
        sig_t = sigma_of_lambda(t)
        if self.dpm_order == 2:
            x_low = x - sig_t * h.expm1() * eps
            x_high = x - sig_t * h.expm1() * eps - sig_t / (2 * r1) * h.expm1() * (eps_r1 - eps)
            return x_low, x_high
        x_low = x - sig_t * h.expm1() * eps - sig_t / (2 * r1) * h.expm1() * (eps_r1 - eps)
        r2 = 2 / 3
        s2 = s + r2 * h
        u2 = (x - sigma_of_lambda(s2) * (r2 * h).expm1() * eps
              - sigma_of_lambda(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1)
              * (eps_r1 - eps))
        eps_r2 = self._eps(denoiser, u2, s2)
        x_high = x - sig_t * h.expm1() * eps - sig_t / r2 * (h.expm1() / h - 1) * (eps_r2 - eps)
        return x_low, x_high

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if i == 0 or self._last_i != i - 1 or self._pid is None:
            self._pid = PIDController(self.h_init, self.pcoeff, self.icoeff, self.dcoeff,
                                      self.dpm_order, self.accept_safety)
            self._x_prev = x
            self.stats = {"steps": 0, "nfe": 0, "n_accept": 0, "n_reject": 0}
        self._last_i = i
        if float(sigma_next) == 0:
            return denoiser(x, sigma)
        pid, stats = self._pid, self.stats
        atol, rtol = x.new_tensor(self.atol), x.new_tensor(self.rtol)
        s, t_end = lambda_(sigma), lambda_(sigma_next)
        x_prev = self._x_prev
        while s < t_end:
            t = torch.minimum(t_end, s + pid.h)
            x_low, x_high = self._trial(denoiser, x, s, t)
            delta = torch.maximum(atol, rtol * torch.maximum(x_low.abs(), x_prev.abs()))
            error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
            if not math.isfinite(float(error)):
                raise FloatingPointError(f"dpm_adaptive: the error estimate is {float(error)} "
                                         f"at sigma = {float(sigma_of_lambda(s)):g}; check the "
                                         f"denoiser's output")
            if pid.propose_step(error):
                x_prev, x, s = x_low, x_high, t
                stats["n_accept"] += 1
            else:
                stats["n_reject"] += 1
            stats["nfe"] += self.dpm_order
            stats["steps"] += 1
        self._x_prev = x_prev
        return x

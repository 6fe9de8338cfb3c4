"""DEIS: the diffusion exponential integrator sampler of Zhang & Chen (2023), tAB and rhoAB."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..processes import Process, get_process
from .._checks import check_bool, check_choice
from .base import CountingDenoiser, Solver, StepHistory, multistep_order, ode_derivative

# Composite Gauss-Legendre rule in u = log(sigma): panels of length <= _PANEL, _POINTS nodes each.
_PANEL = 0.5
_POINTS = 10
_GL_U, _GL_W = np.polynomial.legendre.leggauss(_POINTS)

VARIABLES = ("t", "rho", "log_rho")


def deis_coefficients(nodes: Sequence[float], sigma_next: float,
                      variable: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """DEIS weights ``c_j = int_{nodes[0]}^{sigma_next} l_j(v(s)) ds``.

    ``l_j`` is the Lagrange basis polynomial on the interpolation nodes ``v(nodes[k])`` (``v``
    the interpolation variable: the process time ``t(sigma)`` for tAB, ``sigma`` itself for
    rhoAB when ``variable`` is ``None``), so ``sum_j c_j eps_j`` integrates the Lagrange
    interpolant of ``eps(sigma) = dx/dsigma`` over the step.

    The integral is taken in ``u = log sigma`` (``ds = sigma du``) by composite Gauss-Legendre
    quadrature: ``ceil(|log(sigma_next / nodes[0])| / 0.5)`` panels of 10 points. For every
    process in ``labkit.processes`` the integrand is analytic in the strip
    ``|Im u| < pi / 2`` (``t(sigma)`` is singular only on the imaginary ``sigma`` axis, e.g.
    VP's ``log(1 + sigma^2)`` and its square root), so on a panel of half-length ``a <= 1/4``
    it is analytic inside the Bernstein ellipse of semi-minor axis ``pi / 4``,
    ``rho = pi + sqrt(1 + pi^2) = 6.44``, and Gauss's error is at most
    ``(64 / 15) M rho^-20 / (rho^2 - 1) < 1e-17 M`` per panel (Trefethen, *Approximation Theory
    and Approximation Practice*, Thm. 19.3), ``M`` the integrand's size on that ellipse. The
    tests measure <= 1e-14 relative error against 30-digit mpmath quadrature.

    Parameters
    ----------
    nodes : sequence of float, length ``q >= 1``
        Distinct positive sigmas, current first (``sigma_i, sigma_{i-1}, ...``).
    sigma_next : float
        End of the step, ``> 0``.
    variable : callable, optional
        ``v(sigma)`` on a float64 array, strictly monotone; ``None`` means ``v(sigma) = sigma``.

    Returns
    -------
    ndarray of shape ``(q,)``; the weights sum to ``sigma_next - nodes[0]``.
    """
    nodes = np.asarray(nodes, dtype=np.float64)
    u0, u1 = math.log(nodes[0]), math.log(sigma_next)
    panels = max(1, math.ceil(abs(u1 - u0) / _PANEL))
    edges = np.linspace(u0, u1, panels + 1)
    half = (edges[1:] - edges[:-1]) / 2                                  # (panels,)
    u = ((edges[:-1] + edges[1:]) / 2)[:, None] + half[:, None] * _GL_U  # (panels, points)
    s = np.exp(u).ravel()
    weights = (half[:, None] * _GL_W).ravel() * s                        # ds = sigma du
    v = s if variable is None else variable(s)
    vn = nodes if variable is None else variable(nodes)
    q = len(nodes)
    basis = np.ones((q, s.size))
    for j in range(q):
        for k in range(q):
            if k != j:
                basis[j] *= (v - vn[k]) / (vn[j] - vn[k])
    return basis @ weights


def _check_order(order: Any, high: int) -> int:
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        raise TypeError(f"order must be an int from 1 to {high}, got {type(order).__name__}")
    if not 1 <= order <= high:
        raise ValueError(f"order must be an int from 1 to {high}, got {order}")
    return int(order)


class DEIS(Solver):
    """DEIS, the exponential-integrator multistep sampler (tAB; rhoAB with ``variable="rho"``).

    In EDM variables the exponential integrator of the VP eps-ODE is exact in the linear part:
    ``x_{i+1} = x_i + int_{sigma_i}^{sigma_{i+1}} eps(x(s), s) ds`` with
    ``eps_k = (x_k - D(x_k, sigma_k)) / sigma_k`` (the ``eps`` of ``x_t = alpha (x0 + sigma eps)``,
    and ``dx/dsigma``). tAB replaces ``eps`` by its Lagrange interpolant through the last
    ``q_i`` points in the process time ``t = t(sigma)``:

    ``x_{i+1} = x_i + sum_{j<q_i} c_{ij} eps_{i-j}``,
    ``c_{ij} = int_{sigma_i}^{sigma_{i+1}} prod_{k<q_i, k!=j} (t(s) - t_{i-k}) / (t_{i-j} - t_{i-k}) ds``,

    ``q_i = min(order, i + 1)`` (``labkit.solvers.base.multistep_order``: Euler, then AB2, ...
    as in the official code, which builds the first rows of its coefficient table with lower
    orders). ``order`` is the number of interpolation points, the paper's ``r + 1`` (its
    ``tAB-r`` fits a degree-``r`` polynomial; ``order=1`` is DDIM). ``variable="rho"`` fits the
    polynomial in ``rho = sigma`` (the paper's rhoAB), which is k-diffusion's ``lms``. The step
    to ``sigma = 0`` returns ``D(x_i, sigma_i)`` (the first-order step, as ComfyUI's
    ``sample_deis``). The weights are computed once per step (they do not depend on the sample)
    by ``deis_coefficients``.

    Declared order: the measured global order, ``min(order, 2)``. Euler's local error ``O(h^2)``
    on the first step is never damped, exactly as for ``lms`` (see ``docs/solvers.md``); the
    interior steps have local error ``O(h^(order+1))``. One denoiser call per step.

    Parameters
    ----------
    order : int
        Number of interpolation points, 1 to 4 (default 3, ComfyUI's ``max_order``; the paper's
        ``tAB3`` is ``order=4``).
    variable : {"t", "rho", "log_rho"}
        Interpolation variable: the process time (tAB, default), ``sigma`` (rhoAB), or
        ``log sigma`` (diffusers' ``DEISMultistepScheduler``, whose "logrho" form this
        reproduces; see ``docs/solvers.md``).
    process : str or labkit.processes.Process
        Process whose time ``t(sigma)`` tAB interpolates in (default ``"vp"``: linear beta from
        0.1 to 20, the VPSDE of the paper). Unused when ``variable="rho"``.
    lower_order_final : bool
        Cap the order by the number of steps left (diffusers' option), default ``False``.

    References
    ----------
    Zhang and Chen, "Fast Sampling of Diffusion Models with Exponential Integrator", ICLR 2023,
    arXiv:2204.13902, Sec. 4 (Eq. 15, tAB; Eq. 17, rhoAB); official code qsh-zh/deis
    (``th_deis/multistep.py``, ``get_ab_eps_coef``); ComfyUI ``sample_deis``
    (``comfy/k_diffusion/deis.py``, after zju-pi/diff-sampler).
    """

    name = "deis"
    order = 2.0
    nfe_per_step = 1

    def __init__(self, order: int = 3, variable: str = "t", process: str | Process = "vp",
                 lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.deis_order = _check_order(order, 4)
        self.variable = check_choice(variable, "variable", VARIABLES)
        self.process = get_process(process)
        self.lower_order_final = check_bool(lower_order_final, "lower_order_final")
        self.order = float(min(self.deis_order, 2))  # type: ignore[misc]  # measured
        self._eps = StepHistory(self.deis_order)   # eps_i, eps_{i-1}, ...

    def __repr__(self) -> str:
        return (f"DEIS(order={self.deis_order}, variable={self.variable!r}, "
                f"process={self.process!r}; convergence order {self.order:g})")

    def _time(self, sigma: np.ndarray) -> np.ndarray:
        return self.process.t_of_sigma(torch.from_numpy(sigma)).numpy()

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        self._eps.start(i)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        self._eps.push(ode_derivative(x, sigma, denoised))
        if float(sigma_next) == 0:
            return denoised
        q = multistep_order(self.deis_order, len(self._eps) - 1, i, len(sigmas) - 1,
                            self.lower_order_final)
        nodes = sigmas[i - q + 1:i + 1].tolist()[::-1]      # sigma_i, ..., sigma_{i-q+1}
        variable = {"t": self._time, "rho": None, "log_rho": np.log}[self.variable]
        coeffs = deis_coefficients(nodes, float(sigma_next), variable)
        return x + sum(float(c) * e for c, e in zip(coeffs, self._eps))


# Runge-Kutta warm-up tableaux (c, A, b) of orders 2 (Heun) and 3 (Kutta's third-order rule).
_RK_WARMUP = {2: ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5)),
              3: ((0.0, 0.5, 1.0), ((), (0.5,), (-1.0, 2.0)), (1 / 6, 2 / 3, 1 / 6))}


class DEISCorrected(DEIS):
    """DEIS with a Runge-Kutta warm-up, so that the global order is the nominal ``order``.

    The interior steps are ``DEIS``'s (``q = order`` interpolation points). The first
    ``order - 1`` steps, while the history is short, are taken instead by an explicit
    Runge-Kutta method of order ``order - 1`` in ``sigma`` on ``dx/dsigma = eps`` (Heun for
    ``order = 3``, Kutta's third-order rule for ``order = 4``): local error
    ``O(h^order)`` on a fixed number of steps, hence a global ``O(h^order)``. The stage at the
    start of each warm-up step is the ``eps`` kept in the history. ``order <= 2`` is ``DEIS``
    (order 1: Euler; order 2: an Euler first step with local error ``O(h^2)`` is already enough).

    NFE: one per step plus ``order - 2`` extra calls on each of the first ``order - 1`` steps
    (order 3: +2 in total; order 4: +6); the step to ``sigma = 0`` returns ``D(x_i, sigma_i)``.
    Declared order: ``order`` (measured, see ``docs/solvers.md``).

    Parameters
    ----------
    As ``DEIS`` (default ``order=3``).
    """

    name = "deis_corrected"
    order = 3.0

    def __init__(self, order: int = 3, variable: str = "t", process: str | Process = "vp",
                 lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(order=order, variable=variable, process=process,
                         lower_order_final=lower_order_final, **options)
        self.order = float(self.deis_order)  # type: ignore[misc]  # measured

    def __repr__(self) -> str:
        return super().__repr__().replace("DEIS(", "DEISCorrected(", 1)

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        history = self._eps.consecutive(i)
        if self.deis_order <= 2 or history >= self.deis_order - 1 or float(sigmas[i + 1]) == 0:
            return super().step(denoiser, x, i, sigmas, generator)
        self._eps.start(i)
        sigma, h = sigmas[i], sigmas[i + 1] - sigmas[i]
        c, a, b = _RK_WARMUP[self.deis_order - 1]
        stages: list[Tensor] = []
        for c_k, a_k in zip(c, a):
            s = sigma + c_k * h
            y = x + h * sum(w * e for w, e in zip(a_k, stages)) if a_k else x
            stages.append(ode_derivative(y, s, denoiser(y, s)))
        self._eps.push(stages[0])
        return x + h * sum(w * e for w, e in zip(b, stages))

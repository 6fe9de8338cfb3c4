"""Log-likelihoods of the probability-flow ODE (instantaneous change of variables).

In the EDM convention the probability-flow ODE is ``dx/dsigma = f(x, sigma) = (x - D(x, sigma)) /
sigma``; its flow carries ``p_sigma_min`` to ``p_sigma_max`` when ``D`` is the exact denoiser.
Along a trajectory ``d/dsigma log p_sigma(x(sigma)) = -div_x f`` (Chen et al. 2018), hence

    log p_sigma_min(x) = log p_sigma_max(x(sigma_max)) + int_{sigma_min}^{sigma_max} div_x f ds

(Song et al. 2021, arXiv:2011.13456, Eq. 39 and App. D.2). For a learned ``D`` this is the
exact log-density of the model defined by the ODE, up to the prior's boundary term and the
integration error. :func:`flow_log_prob` integrates ``x`` and the increment jointly in
``t = log sigma``, where ``dx/dt = x - D(x, e^t)`` and ``sigma div_x f = d - div_x D``, so the
integrand is smooth across scales and a uniform grid in ``t`` suits every ``sigma`` range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .._checks import check_bool, check_choice, check_generator, check_positive_int
from ..progress import progress as progress_bar
from .divergence import PROBES, _check_points, draw_probes, exact_divergence, probe_estimates

DIVERGENCES = ("exact", "hutchinson")

# Explicit Runge-Kutta tableaus (c, A, b) and their classical order.
_TABLEAUS: dict[str, tuple[tuple[float, ...], tuple[tuple[float, ...], ...], tuple[float, ...],
                           int]] = {
    "euler": ((0.0,), ((),), (1.0,), 1),
    "heun": ((0.0, 1.0), ((), (1.0,)), (0.5, 0.5), 2),
    "rk4": ((0.0, 0.5, 0.5, 1.0), ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
            (1 / 6, 1 / 3, 1 / 3, 1 / 6), 4),
}
METHODS = tuple(_TABLEAUS)


@dataclass(frozen=True)
class FlowLogProb:
    """Result of :func:`flow_log_prob` (all tensors detached, in ``x``'s dtype and device).

    Attributes
    ----------
    log_prob : Tensor of shape ``(n,)``
        ``prior_log_prob + delta_log_prob``: the model's ``log p_sigma_min(x)``.
    prior_log_prob : Tensor of shape ``(n,)``
        ``log p_sigma_max(x_final)`` under the prior.
    delta_log_prob : Tensor of shape ``(n,)``
        ``int_{sigma_min}^{sigma_max} div_x f ds`` (for Hutchinson, the mean over probes).
    x_final : Tensor of shape ``(n, d)``
        The ODE solution at ``sigma_max``.
    nfe : int
        Denoiser calls (each on the whole batch), the Richardson half-step run included.
    error_estimate : Tensor of shape ``(n,)`` or None
        Richardson estimate of the integration error of ``log_prob``,
        ``|l_N - l_{N/2}| / (2^p - 1)`` for a method of order ``p``; ``None`` when not asked.
    variance : Tensor of shape ``(n,)`` or None
        Hutchinson only, ``n_probes > 1``: the variance of ``log_prob`` over the probes,
        estimated as the sample variance of the per-probe log-likelihoods divided by
        ``n_probes``.
    method : str
    n_steps : int
    divergence : str
    """

    log_prob: Tensor
    prior_log_prob: Tensor
    delta_log_prob: Tensor
    x_final: Tensor
    nfe: int
    error_estimate: Tensor | None
    variance: Tensor | None
    method: str
    n_steps: int
    divergence: str


def gaussian_prior_log_prob(z: Tensor, sigma: float) -> Tensor:
    """``log N(z; 0, sigma^2 I) = -|z|^2 / (2 sigma^2) - (d / 2) log(2 pi sigma^2)`` row by row.

    The default prior of :func:`flow_log_prob` and the input density of
    :func:`labkit.likelihood.sampler.sampler_log_prob`.

    Parameters
    ----------
    z : Tensor of shape ``(n, d)``
    sigma : float
        Standard deviation, ``> 0``.

    Returns
    -------
    Tensor of shape ``(n,)`` in ``z``'s dtype and device.
    """
    sigma = float(sigma)
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite positive float, got {sigma}")
    d = z.shape[1]
    return -0.5 * z.square().sum(dim=1) / sigma ** 2 - 0.5 * d * math.log(2 * math.pi * sigma ** 2)


def _check_sigmas(sigma_min: object, sigma_max: object) -> tuple[float, float]:
    values = []
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"{name} must be a finite float, got {v!r}")
        values.append(float(v))
    lo, hi = values
    if not 0 < lo < hi:
        raise ValueError(f"need 0 < sigma_min < sigma_max, got sigma_min={lo}, sigma_max={hi}")
    return lo, hi


def _velocity(denoiser: Callable, sigma: float) -> Callable[[Tensor], Tensor]:
    """``y -> dy/dt = y - D(y, sigma)`` at ``t = log sigma``, with the denoiser's output checked."""
    def g(y: Tensor) -> Tensor:
        out = denoiser(y, torch.full((y.shape[0],), sigma, dtype=y.dtype, device=y.device))
        if not isinstance(out, Tensor) or out.shape != y.shape:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"denoiser(x, sigma) must return a tensor of x's shape "
                             f"{tuple(y.shape)}, got {got}")
        if torch.is_grad_enabled() and not out.requires_grad:
            raise ValueError("denoiser(x, sigma) is not differentiable in x (its output has no "
                             "autograd graph); the likelihood needs div_x D")
        return y - out
    return g


def _integrate(denoiser: Callable, x: Tensor, t_min: float, t_max: float, n_steps: int,
               method: str, noise: Tensor | None, resample: bool, probe: str,
               generator: torch.Generator | None, progress: bool = False
               ) -> tuple[Tensor, Tensor, int]:
    """Explicit RK in ``t = log sigma``: ``(x(t_max), int div f ds per probe (K, n), nfe)``."""
    c, a, b, _ = _TABLEAUS[method]
    h = (t_max - t_min) / n_steps
    k_rows = 1 if noise is None else noise.shape[0]
    delta = x.new_zeros(k_rows, x.shape[0])
    nfe = 0
    for i in progress_bar(range(n_steps), desc=f"flow_log_prob ({method}, {n_steps} steps)",
                          enable=bool(progress)):
        t = t_min + i * h
        if noise is not None and resample and i > 0:
            noise = draw_probes(noise.shape[0], tuple(x.shape), probe=probe,
                                generator=generator, dtype=x.dtype, device=x.device)
        slopes, step_div = [], torch.zeros_like(delta)
        for c_s, a_s, b_s in zip(c, a, b):
            y = x + h * sum(a_sj * k for a_sj, k in zip(a_s, slopes)) if a_s else x
            g = _velocity(denoiser, math.exp(t + c_s * h))
            if noise is None:
                k, div = exact_divergence(g, y)
                div = div[None]
            else:
                k, div = probe_estimates(g, y, noise)
            nfe += 1
            slopes.append(k)
            step_div = step_div + b_s * div
        x = x + h * sum(b_s * k for b_s, k in zip(b, slopes))
        delta = delta + h * step_div
    return x, delta, nfe


def flow_log_prob(denoiser: Callable, x: Tensor, *, sigma_min: float, sigma_max: float,
                  prior_log_prob: Callable[[Tensor], Tensor] | None = None,
                  divergence: str = "exact", n_probes: int = 1, probe: str = "rademacher",
                  resample_probes: bool = False, n_steps: int = 64, method: str = "rk4",
                  error_estimate: bool = True, generator: torch.Generator | None = None,
                  progress: bool = False) -> FlowLogProb:
    """Log-density at ``x`` of the probability-flow ODE's model at noise level ``sigma_min``.

    ``log p_sigma_min(x) = log p_prior(x(sigma_max)) + int_{sigma_min}^{sigma_max} div_x f ds``
    with ``f = (x - D(x, sigma)) / sigma``, integrated jointly with ``x`` by an explicit
    Runge-Kutta method on ``n_steps`` equal steps of ``t = log sigma`` (``dx/dt = x - D``,
    ``sigma div_x f = d - div_x D``), vectorised over the batch, under ``torch.enable_grad()``
    for the divergence only and detached between stages, so memory is that of one stage.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)`` with ``x`` of shape ``(n, d)`` and ``sigma`` of shape ``(n,)``,
        differentiable in ``x`` and row-wise (every labkit target qualifies).
    x : Tensor of shape ``(n, d)``
        Points; dtype and device follow ``x`` (float64 recommended).
    sigma_min, sigma_max : float
        ``0 < sigma_min < sigma_max``. ``sigma_min`` is the noise level whose density is
        returned; the prior stands in for ``p_sigma_max``.
    prior_log_prob : callable, optional
        ``z -> log p_sigma_max(z)``, shape ``(n,)``. Default ``log N(z; 0, sigma_max^2 I)``, an
        approximation to ``p_sigma_max = p * N(0, sigma_max^2 I)``: for data of mean ``m`` and
        covariance ``S`` the error at ``z`` is ``z.m / sigma_max^2 + O(|m|^2 + tr S) /
        sigma_max^2``, i.e. of order ``|m| / sigma_max`` at a typical endpoint ``|z| ~
        sigma_max`` and averaging to ``O((|m|^2 + tr S) / sigma_max^2)`` over points. Negligible
        when ``sigma_max`` is far above the data scale; pass ``lambda z: target.log_prob(z,
        sigma_max)`` for an exact boundary term.
    divergence : {"exact", "hutchinson"}
        ``"exact"``: ``d`` reverse passes per stage (:func:`exact_divergence`); ``"hutchinson"``:
        ``n_probes`` vector-Jacobian products per stage (:func:`hutchinson_divergence`).
    n_probes : int
        Hutchinson probes per point, ``>= 1``.
    probe : {"rademacher", "gaussian"}
    resample_probes : bool
        ``False`` (default, as FFJORD): one probe set per trajectory, fixed over all steps, so
        the integrand is smooth in ``t`` and the Richardson estimate measures integration error
        only. ``True``: fresh probes at every step (shared by that step's stages), which lowers
        the variance when the Jacobian varies along the path; the Richardson estimate then also
        contains Monte-Carlo noise. Both are unbiased for the Runge-Kutta quadrature of the exact
        integrand, since each stage's estimate is unbiased and the quadrature is linear in them.
    n_steps : int
        Steps in ``log sigma``; even when ``error_estimate``.
    method : {"rk4", "heun", "euler"}
        Classical order 4, 2, 1.
    error_estimate : bool
        Also integrate with ``n_steps // 2`` steps (half again the cost) and report the
        Richardson estimate ``|l_N - l_{N/2}| / (2^p - 1)`` of ``log_prob``'s integration error.
    generator : torch.Generator, optional
        Source of the Hutchinson probes.
    progress : bool
        Show a progress bar over the integration steps (one bar per solve, so a second one for
        the Richardson half-step run); the results are the same with or without it.

    Returns
    -------
    FlowLogProb

    Notes
    -----
    **Error estimate (not a bound).** For a smooth field the global error of an order-``p``
    method on a uniform grid is ``C h^p + O(h^{p+1})`` with
    ``h = log(sigma_max / sigma_min) / n_steps``, so halving ``h`` divides it by ``2^p`` (16 for
    RK4) and ``|l_N - l_{N/2}| / (2^p - 1)`` (Richardson) estimates the error of ``l_N``. It is
    an asymptotic estimate: where the error is near round-off, or the observed order is far
    from ``p``, the actual error can exceed it by a few times (see ``docs/likelihood.md``). It
    covers the integration only, not the boundary term: the default prior
    ``N(0, sigma_max^2 I)`` adds an error of order ``|m| / sigma_max`` per point. Cost per point: ``stages * n_steps`` denoiser calls (x1.5 with the error
    estimate), each followed by ``d`` (exact) or ``n_probes`` (Hutchinson) reverse passes.

    References
    ----------
    Song, Sohl-Dickstein, Kingma, Kumar, Ermon, Poole, "Score-based generative modeling through
    stochastic differential equations", ICLR 2021, arXiv:2011.13456, Sec. 4.3, Eq. 39, App. D.2.
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations", NeurIPS
    2018, arXiv:1806.07366. Grathwohl et al., "FFJORD", ICLR 2019, arXiv:1810.01367. Karras et
    al. (EDM), NeurIPS 2022, arXiv:2206.00364 (the ``D(x, sigma)`` convention). Peer: the
    ``likelihood.py`` of Song's score_sde (``get_likelihood_fn``), in the VE/VP parametrisation.

    Examples
    --------
    >>> import labkit
    >>> target = labkit.Gaussian(torch.zeros(2), torch.eye(2))
    >>> x = target.sample(5, torch.Generator().manual_seed(0))
    >>> res = flow_log_prob(target, x, sigma_min=0.01, sigma_max=10.0, n_steps=32,
    ...                     prior_log_prob=lambda z: target.log_prob(z, 10.0))
    >>> bool((res.log_prob - target.log_prob(x, 0.01)).abs().max() < 1e-3)  # RK4 error 3.6e-5
    True
    """
    if not callable(denoiser):
        raise TypeError(f"denoiser must be callable as denoiser(x, sigma), "
                        f"got {type(denoiser).__name__}")
    x = _check_points(x, finite=True).detach()
    lo, hi = _check_sigmas(sigma_min, sigma_max)
    check_choice(divergence, "divergence", DIVERGENCES)
    check_choice(method, "method", METHODS)
    check_choice(probe, "probe", PROBES)
    n_probes = check_positive_int(n_probes, "n_probes")
    n_steps = check_positive_int(n_steps, "n_steps")
    check_bool(resample_probes, "resample_probes")
    check_bool(error_estimate, "error_estimate")
    check_generator(generator)
    if error_estimate and n_steps % 2:
        raise ValueError(f"n_steps must be even when error_estimate=True (the Richardson estimate "
                         f"halves it), got {n_steps}")
    if prior_log_prob is None:
        def prior_log_prob(z: Tensor) -> Tensor:
            return gaussian_prior_log_prob(z, hi)
    elif not callable(prior_log_prob):
        raise TypeError(f"prior_log_prob must be callable as prior_log_prob(z) -> (n,) tensor, "
                        f"got {type(prior_log_prob).__name__}")

    noise = None
    if divergence == "hutchinson":
        noise = draw_probes(n_probes, tuple(x.shape), probe=probe, generator=generator,
                            dtype=x.dtype, device=x.device)
    t_min, t_max = math.log(lo), math.log(hi)

    def solve(steps: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
        with torch.no_grad():
            x_end, delta, nfe = _integrate(denoiser, x, t_min, t_max, steps, method, noise,
                                           resample_probes, probe, generator, progress)
            prior = prior_log_prob(x_end)
        if not isinstance(prior, Tensor) or prior.shape != (x.shape[0],):
            got = tuple(prior.shape) if isinstance(prior, Tensor) else type(prior).__name__
            raise ValueError(f"prior_log_prob(z) must return a tensor of shape ({x.shape[0]},), "
                             f"got {got}")
        prior = prior.detach().to(x.dtype)
        return x_end, prior, delta, prior + delta.mean(dim=0), nfe

    x_end, prior, delta, log_prob, nfe = solve(n_steps)
    error = None
    if error_estimate:
        *_, coarse, nfe_coarse = solve(n_steps // 2)
        nfe += nfe_coarse
        error = (log_prob - coarse).abs() / (2 ** _TABLEAUS[method][3] - 1)
    variance = delta.var(dim=0) / delta.shape[0] if delta.shape[0] > 1 else None
    return FlowLogProb(log_prob=log_prob, prior_log_prob=prior, delta_log_prob=delta.mean(dim=0),
                       x_final=x_end, nfe=nfe, error_estimate=error, variance=variance,
                       method=method, n_steps=n_steps, divergence=divergence)

"""Exact log-density of a deterministic sampler's output, and its exact-integrand KL.

A deterministic sampler (an ODE solver on a fixed grid, no churn) is a map ``Phi`` from its
input ``z ~ N(0, sigma_max^2 I)`` (``sigma_max = sigmas[0]``) to its output ``y = Phi(z)``. For
steps small enough ``Phi`` is a diffeomorphism, and the output's density is, exactly,

``log q(y) = log N(z; 0, sigma_max^2 I) - log |det J_Phi(z)|``

(change of variables). This is the density of what the *discretised* sampler produces, not of
the probability-flow ODE it approximates (for that, see ``labkit.likelihood.flow``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .. import grids
from .._checks import as_float_tensor, check_positive_int
from .._intervals import mc_mean
from ..metrics.estimate import Estimate
from ..solvers import sample
from ..solvers.base import Denoiser, Solver
from ._solvers import solver_instance
from .flow import gaussian_prior_log_prob

#: Solvers whose map is not a function of one sample alone (their step size is chosen from an
#: error norm over the whole batch and jumps with ``z``), so ``J_Phi`` is not meaningful.
EXCLUDED = {"dpm_adaptive": "its step size is chosen by error control from a norm over the "
                            "whole batch, so the output of one sample depends on the others and "
                            "the map jumps where a step is rejected; use a fixed-grid solver"}

SDE_ALTERNATIVE = ("for stochastic samplers in 1-D use labkit.likelihood.sde_chain."
                   "chain_marginal_1d / chain_kl_1d (the exact law of the discretised chain on "
                   "a grid)")

_ROWS_PER_PASS = 1 << 16  # rows (points x dimensions) differentiated in one sampler pass


@dataclass(frozen=True)
class SamplerLogProb:
    """The output of a deterministic sampler and its exact log-density.

    Attributes
    ----------
    y : Tensor of shape ``(n, ...)``
        ``Phi(z)``, the sampler's output (the same numbers as ``labkit.sample``).
    log_prob : Tensor of shape ``(n,)``
        ``log q(y) = prior_log_prob - log_abs_det``.
    log_abs_det : Tensor of shape ``(n,)``
        ``log |det J_Phi(z)|`` (``slogdet`` in float64).
    prior_log_prob : Tensor of shape ``(n,)``
        ``log N(z; 0, sigma_max^2 I)``.
    jacobian : Tensor of shape ``(n, d, d)``
        ``J_Phi(z)`` with ``d`` the number of entries of one sample (flattened).
    nfe : int
        Denoiser calls made; each call was on a batch of ``n * d`` rows (or a chunk of it).
    """

    y: Tensor
    log_prob: Tensor
    log_abs_det: Tensor
    prior_log_prob: Tensor
    jacobian: Tensor
    nfe: int


def _deterministic_solver(solver: str, options: dict[str, Any]) -> Solver:
    """The solver instance, after rejecting stochastic and excluded ones with the reason."""
    instance = solver_instance(solver, options, EXCLUDED, "sampler_log_prob")
    if instance.stochastic:
        what = ("churn (s_churn > 0) draws noise at every step"
                if options.get("s_churn", 0) else f"solver {solver!r} draws noise")
        raise ValueError(f"sampler_log_prob needs a deterministic sampler, but {what} with "
                         f"options {options}: its output has no change-of-variables density; "
                         f"{SDE_ALTERNATIVE}")
    return instance


def sampler_log_prob(denoiser: Denoiser, z: Tensor, sigmas: Tensor, solver: str = "heun", *,
                     progress: bool = False, **options: Any) -> SamplerLogProb:
    """Exact log-density ``log q(Phi(z))`` of a deterministic sampler's output.

    ``log q(y) = log N(z; 0, sigma_max^2 I) - log |det J_Phi(z)|`` with ``y = Phi(z)`` the
    sampler's output from ``z`` (``labkit.sample(denoiser, z, sigmas, solver, **options)``) and
    ``sigma_max = sigmas[0]``. ``J_Phi`` is computed exactly by reverse-mode autograd through
    the whole run (every step, every history term of multistep solvers), so ``log q`` has no
    discretisation or estimation error beyond round-off: it is the density of what the
    discretised sampler outputs, not of the ODE's flow.

    The change of variables holds when ``Phi`` is a diffeomorphism (``|det J_Phi|`` makes it
    hold for orientation-reversing maps too, ``det J_Phi < 0`` everywhere), true for small
    enough steps. Two things raise a ``ValueError`` asking for more steps: ``det J_Phi(z) = 0``
    at an evaluated point (the density is infinite there), and a sign of ``det J_Phi`` that
    differs between evaluated points. The latter proves ``Phi`` is not injective: an injective
    ``C^1`` map of ``R^d`` has a local degree of constant sign, equal to ``sign det J_Phi``
    wherever it is non-zero (invariance of domain), so on any path between two points of
    opposite sign ``det J_Phi`` vanishes and the map folds (several ``z`` reach the same
    ``y``). A constant sign at the evaluated points does not prove injectivity elsewhere.

    Cost: one sampler run on a batch of ``n * d`` rows (each point repeated ``d`` times, ``d``
    the number of entries of one sample), kept in memory for one backward pass; processed in
    chunks of at most ``2**16`` rows. Memory and time grow like ``d^2`` per point (``d``
    Jacobian rows of ``d`` entries): meant for low dimension, ``d <= 64``.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)``, differentiable in ``x`` (any labkit ``Target``).
    z : Tensor of shape ``(n, ...)``
        Sampler inputs, drawn from ``N(0, sigma_max^2 I)`` for ``log_prob`` to be the density
        of the outputs. dtype float64 recommended (the result's dtype follows ``z``).
    sigmas : Tensor of shape ``(N + 1,)``
        A valid grid (``labkit.grids.validate``).
    solver : str
        A deterministic solver name from ``labkit.solvers.SOLVERS``. Stochastic solvers and
        churn (``s_churn > 0``) are rejected (see ``labkit.likelihood.sde_chain`` for 1-D
        stochastic samplers); ``dpm_adaptive`` is rejected because its batch-wide step-size
        control makes one sample's output depend on the others.
    progress : bool
        Show a progress bar over the sampler's steps (``labkit.sample``'s, one bar per chunk of
        points); the results are the same with or without it.
    **options
        Solver options, and ``denoise_to_zero`` (passed to ``labkit.sample``).

    Returns
    -------
    SamplerLogProb
        ``y``, ``log_prob``, ``log_abs_det``, ``prior_log_prob``, ``jacobian``, ``nfe``.

    Examples
    --------
    >>> import torch, labkit
    >>> from labkit.likelihood.sampler import sampler_log_prob
    >>> target = labkit.Gaussian(torch.zeros(2), torch.eye(2))
    >>> sigmas = labkit.grids.karras(10, 0.002, 80.0)
    >>> z = 80.0 * torch.randn(4, 2, dtype=torch.float64)
    >>> out = sampler_log_prob(target, z, sigmas, solver="heun")
    >>> out.log_prob.shape
    torch.Size([4])

    References
    ----------
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural Ordinary Differential Equations", NeurIPS
    2018, arXiv:1806.07366 (change of variables through a flow); Dinh, Sohl-Dickstein, Bengio,
    "Density estimation using Real NVP", ICLR 2017, arXiv:1605.08803 (exact log-determinants
    of a composed map).
    """
    if not isinstance(z, Tensor) or not z.is_floating_point() or z.ndim < 1:
        raise TypeError("z must be a floating torch.Tensor of shape (n, ...)")
    denoise_to_zero = options.pop("denoise_to_zero", False)
    instance_options = dict(options)
    instance = _deterministic_solver(solver, instance_options)  # validate before any work
    sigmas = grids.validate(sigmas).to(dtype=z.dtype, device=z.device)
    n = z.shape[0]
    sample_shape = tuple(z.shape[1:])
    d = math.prod(sample_shape)
    flat = z.detach().reshape(n, d)
    chunk = max(1, _ROWS_PER_PASS // d)
    ys, jacs, nfe = [], [], 0
    for start in range(0, n, chunk):  # chunks of points bound the memory of the graph
        part = flat[start:start + chunk]
        m = part.shape[0]
        rows = part.repeat_interleave(d, dim=0).requires_grad_(True)  # (m d, d)
        with torch.enable_grad():
            out, info = sample(denoiser, rows.reshape((m * d,) + sample_shape), sigmas,
                               instance,  # history is reset at i = 0: chunks independent
                               denoise_to_zero=denoise_to_zero, progress=progress)
            out = out.reshape(m * d, d)
            basis = torch.eye(d, dtype=z.dtype, device=z.device).repeat(m, 1)  # e_k on copy k
            (grad,) = torch.autograd.grad(out, rows, grad_outputs=basis)
        ys.append(out.detach().reshape(m, d, d)[:, 0])
        jacs.append(grad.reshape(m, d, d))  # jac[j, k, :] = d y_k / d z of point j
        nfe += info.nfe
    y, jac = torch.cat(ys), torch.cat(jacs)
    sign, log_abs_det = torch.linalg.slogdet(jac.to(torch.float64))
    if bool((sign == 0).any()):
        bad = int((sign == 0).sum())
        raise ValueError(f"the {solver!r} sampler map is singular: det J_Phi(z) = 0 at {bad} of "
                         f"{n} points, where the output density is infinite; the grid of "
                         f"{len(sigmas) - 1} steps is too coarse: use more steps")
    if bool((sign != sign[:1]).any()):
        neg = int((sign < 0).sum())
        raise ValueError(f"the {solver!r} sampler map folds: det J_Phi(z) < 0 at {neg} and > 0 "
                         f"at {n - neg} of {n} points, so on a path between them it vanishes "
                         f"and the map is not injective on this grid of {len(sigmas) - 1} "
                         f"steps (no change-of-variables density); use more steps")
    log_abs_det = log_abs_det.to(z.dtype)
    prior = gaussian_prior_log_prob(flat, float(sigmas[0]))
    return SamplerLogProb(y=y.reshape(z.shape), log_prob=prior - log_abs_det,
                          log_abs_det=log_abs_det, prior_log_prob=prior, jacobian=jac, nfe=nfe)


def sampler_kl(denoiser: Denoiser, target: Any, sigmas: Tensor, solver: str = "heun", *,
               n: int, generator: torch.Generator | None,
               sigma_target: float | None = None, level: float = 0.95, progress: bool = False,
               **options: Any) -> Estimate:
    """``KL(q || p)`` of a deterministic sampler's output law ``q`` by Monte Carlo with the exact
    integrand.

    ``KL(q || p) = E_{z ~ N(0, sigma_max^2 I)}[log q(Phi(z)) - log p(Phi(z))]`` with ``log q``
    from :func:`sampler_log_prob` (exact) and ``p = target.log_prob(., sigma_target)``. The only
    error is Monte Carlo: the value is the mean of ``n`` i.i.d. exact integrands, unbiased, with
    a Student-t interval (``labkit._intervals.mc_mean``) and ``stderr = s / sqrt(n)``.

    ``sigma_target`` defaults to ``sigmas[-1]`` (0 for grids ending at 0; ``0`` also when
    ``denoise_to_zero=True``): a grid ending at ``sigma_N > 0`` is compared with the noised
    target ``p_{sigma_N} = p * N(0, sigma_N^2 I)``, the law the sampler approximates there.

    Only this direction is available: ``q``'s density is known on its own samples
    ``Phi(z)``, not at arbitrary points (that would need ``Phi^{-1}``), so ``KL(p || q)`` is not
    estimated.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma)`` driving the sampler (e.g. the target itself, or a model of it).
    target : labkit Target
        ``p``; needs ``dim`` and ``log_prob(x, sigma)``.
    sigmas : Tensor of shape ``(N + 1,)``
    solver : str
        A deterministic solver (see :func:`sampler_log_prob`).
    n : int
        Number of prior draws, ``>= 2``.
    generator : torch.Generator or None
        Source of the draws ``z = sigma_max * randn(n, dim)`` (float64).
    sigma_target : float, optional
        Noise level of ``p``, ``>= 0``; see above.
    level : float
        Interval coverage.
    progress : bool
        Show a progress bar over the sampler's steps (see :func:`sampler_log_prob`); the
        results are the same with or without it.
    **options
        Solver options (and ``denoise_to_zero``).

    Returns
    -------
    Estimate
        ``value``, ``interval``, ``n``, ``method``, ``stderr``.

    Examples
    --------
    >>> import torch, labkit
    >>> from labkit.likelihood.sampler import sampler_kl
    >>> target = labkit.Gaussian(torch.zeros(2), torch.eye(2))
    >>> sigmas = labkit.grids.karras(10, 0.002, 80.0)
    >>> est = sampler_kl(target, target, sigmas, "heun", n=256,
    ...                  generator=torch.Generator().manual_seed(0))
    >>> est.value < 0.01
    True
    """
    n = check_positive_int(n, "n", minimum=2)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    sigmas = grids.validate(sigmas).to(torch.float64)
    if sigma_target is None:
        sigma_target = 0.0 if options.get("denoise_to_zero", False) else float(sigmas[-1])
    sigma_target = float(as_float_tensor(sigma_target, "sigma_target"))
    if sigma_target < 0:
        raise ValueError(f"sigma_target must be >= 0 (the noise level of p; 0 for the clean "
                         f"target), got {sigma_target}")
    z = sigmas[0] * torch.randn(n, target.dim, generator=generator, dtype=torch.float64)
    res = sampler_log_prob(denoiser, z, sigmas, solver, progress=progress, **options)
    values = res.log_prob - target.log_prob(res.y, sigma_target)
    result = mc_mean(values.detach().cpu().numpy(), level)
    stderr = float(values.std()) / math.sqrt(n)
    method = (f"Monte Carlo mean of the exact integrand log q(Phi(z)) - log p(Phi(z)) "
              f"({solver}, {len(sigmas) - 1} steps, sigma_target={sigma_target:g}); "
              f"{result.method}")
    return Estimate(result.value, result.interval, result.n, method, stderr)

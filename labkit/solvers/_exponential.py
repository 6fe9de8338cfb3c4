"""Shared helpers for solvers written in log-sigma (exponential integrators, DPM-Solver family).

In the EDM convention (``alpha = 1``) the half-log-SNR of DPM-Solver is ``lambda_ = -log sigma``,
and k-diffusion writes ``t = -log sigma`` for it. A final ``sigma = 0`` maps to ``lambda_ = inf``,
where the exact formulas below take their limits (``sigma_next / sigma = 0``,
``expm1(-h) = -1``) without a special case.

Over a step ``h = lambda_{i+1} - lambda_i`` the PF-ODE ``dx/dlambda_ = D(x, sigma) - x`` has the
variation-of-constants solution (Lu et al. 2022, arXiv:2211.01095, Eq. (8))

``x_{i+1} = e^{-h} x_i + sum_{k>=0} h^{k+1} phi_{k+1}(-h) D^{(k)}(lambda_i)``,

with ``D^{(k)}`` the ``k``-th total derivative of ``D`` along the solution in ``lambda_`` and
``phi_k(z) = sum_{j>=0} z^j / (j + k)!`` (``phi_1(z) = (e^z - 1) / z``,
``phi_2(z) = (e^z - 1 - z) / z^2``, ...). In noise prediction (``eps = (x - D) / sigma``) the
same solution reads ``x_{i+1} = x_i - sigma_{i+1} sum_k h^{k+1} phi_{k+1}(h) eps^{(k)}``
(Lu et al. 2022, arXiv:2206.00927, Eq. (3.6)). Truncating the sums gives DPM-Solver(++) of
order ``k``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# phi_k(z) by its Taylor series for |z| < 1 (no cancellation: the terms fall below
# 1 / (SERIES_TERMS + k)! < 1e-19, below float64 round-off), by the closed form elsewhere
# (where expm1(z) - sum_{j<k} z^j / j! loses at most a factor k! of relative precision).
_SERIES_TERMS = 20


def lambda_(sigma: Tensor) -> Tensor:
    """Half-log-SNR ``lambda_ = -log sigma`` (Lu et al. 2022, with ``alpha = 1``)."""
    return sigma.log().neg()


def sigma_of_lambda(t: Tensor) -> Tensor:
    """``sigma = e^{-lambda_}``, as k-diffusion's ``sigma_fn``."""
    return t.neg().exp()


def log_midpoint(sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Geometric mean ``exp((log sigma + log sigma_next) / 2)``: the midpoint in log-sigma."""
    return sigma.log().lerp(sigma_next.log(), 0.5).exp()


def phi(k: int, z: Tensor) -> Tensor:
    """Exponential-integrator function ``phi_k(z) = sum_{j>=0} z^j / (j + k)!``, ``k >= 1``.

    ``phi_1(z) = (e^z - 1) / z``, ``phi_2(z) = (e^z - 1 - z) / z^2``,
    ``phi_3(z) = (e^z - 1 - z - z^2 / 2) / z^3``; ``phi_k(0) = 1 / k!``. Evaluated without
    cancellation for small ``|z|`` (Taylor series for ``|z| < 1``, ``expm1`` otherwise), so
    it is accurate to round-off for every finite ``z`` (and ``z -> 0``), in the dtype of ``z``.

    Parameters
    ----------
    k : int
        Index, ``1 <= k <= 6``.
    z : Tensor
        Any shape.
    """
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"k must be an int, got {type(k).__name__}")
    if not 1 <= k <= 6:
        raise ValueError(f"k must be in 1..6, got {k}")
    # Series by Horner: sum_j z^j / (j + k)!.
    series = torch.full_like(z, 1.0 / math.factorial(_SERIES_TERMS + k))
    for j in range(_SERIES_TERMS - 1, -1, -1):
        series = series * z + 1.0 / math.factorial(j + k)
    head = torch.expm1(z)
    for j in range(1, k):
        head = head - z ** j / math.factorial(j)
    closed = head / z ** k
    return torch.where(z.abs() < 1, series, closed)


def data_prediction_update(x: Tensor, t: Tensor, t_next: Tensor, h: Tensor,
                           denoised: Tensor) -> Tensor:
    """``x_next = (sigma(t_next) / sigma(t)) x - expm1(-h) D`` in k-diffusion's arithmetic.

    ``t = lambda_`` values and ``h = t_next - t`` (passed separately so that a caller can
    reproduce k-diffusion's rounding, e.g. ``r * h`` for a stage at ``t + r h``).
    """
    return (sigma_of_lambda(t_next) / sigma_of_lambda(t)) * x - (-h).expm1() * denoised


def data_prediction_step(x: Tensor, sigma: Tensor, sigma_next: Tensor,
                         denoised: Tensor) -> Tensor:
    """First-order exponential-integrator step with the denoiser held constant.

    ``x_next = (sigma_next / sigma) x - (e^{-h} - 1) D`` with ``h = lambda_(sigma_next) -
    lambda_(sigma)``: the exact solution of the PF-ODE over the step if ``D`` were constant
    (DPM-Solver++(1), which equals DDIM; Lu et al. 2022, arXiv:2211.01095, Eq. (8)). With
    ``sigma_next = 0`` it returns ``D``.

    Parameters
    ----------
    x, denoised : Tensor of shape ``(n, ...)``
    sigma, sigma_next : 0-d Tensor
        ``sigma > 0``, ``sigma_next >= 0``.
    """
    t, t_next = lambda_(sigma), lambda_(sigma_next)
    # The ratio as exp(-t_next) / exp(-t), the way k-diffusion computes sigma_next / sigma.
    return data_prediction_update(x, t, t_next, t_next - t, denoised)


def noise_prediction_update(x: Tensor, t_next: Tensor, h: Tensor, eps: Tensor) -> Tensor:
    """DPM-Solver-1 in noise prediction: ``x_next = x - sigma(t_next) (e^h - 1) eps``.

    With ``alpha = 1`` this is Euler in ``sigma`` (``sigma(t_next) (e^h - 1) = sigma - sigma_next``);
    needs ``sigma_next > 0`` (``lambda_ = inf`` gives ``0 * inf``).
    """
    return x - sigma_of_lambda(t_next) * h.expm1() * eps

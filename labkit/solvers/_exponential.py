"""Shared helpers for solvers written in log-sigma (exponential integrators, DPM-Solver family).

In the EDM convention (``alpha = 1``) the half-log-SNR of DPM-Solver is ``lambda_ = -log sigma``,
and k-diffusion writes ``t = -log sigma`` for it. A final ``sigma = 0`` maps to ``lambda_ = inf``,
where the exact formulas below take their limits (``sigma_next / sigma = 0``,
``expm1(-h) = -1``) without a special case.
"""

from __future__ import annotations

from torch import Tensor


def lambda_(sigma: Tensor) -> Tensor:
    """Half-log-SNR ``lambda_ = -log sigma`` (Lu et al. 2022, with ``alpha = 1``)."""
    return sigma.log().neg()


def log_midpoint(sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """Geometric mean ``exp((log sigma + log sigma_next) / 2)``: the midpoint in log-sigma."""
    return sigma.log().lerp(sigma_next.log(), 0.5).exp()


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
    h = t_next - t
    # The ratio as exp(-t_next) / exp(-t), the way k-diffusion computes sigma_next / sigma.
    return (t_next.neg().exp() / t.neg().exp()) * x - (-h).expm1() * denoised

"""DPM-Solver++(2S): the second-order singlestep exponential integrator in data prediction,
deterministic (``dpmpp_2s``) and ancestral (``dpmpp_2s_ancestral``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._exponential import data_prediction_update, lambda_, sigma_of_lambda
from .base import CountingDenoiser, Solver, ode_derivative
from .dpmpp_sde import NoiseSampler, StochasticOptions
from .euler_ancestral import ancestral_step


def _dpmpp_2s_update(denoiser: CountingDenoiser, x: Tensor, sigma: Tensor, sigma_next: Tensor,
                     denoised: Tensor) -> Tensor:
    """One DPM-Solver++(2S) step (``r = 1/2``) from ``sigma`` to ``sigma_next > 0``, given
    ``denoised = D(x, sigma)``; one more denoiser call, in k-diffusion's arithmetic."""
    t, t_next = lambda_(sigma), lambda_(sigma_next)
    h = t_next - t
    r = 1 / 2
    s = t + r * h
    u = data_prediction_update(x, t, s, h * r, denoised)
    return data_prediction_update(x, t, t_next, h, denoiser(u, sigma_of_lambda(s)))


class DPMpp2S(Solver):
    """Deterministic DPM-Solver++(2S) (Lu et al. 2022, Algorithm 1 with ``r = 1/2``).

    With ``lambda_ = -log sigma``, ``h = lambda_{i+1} - lambda_i``, ``s = lambda_i + h / 2``:

    ``u = (sigma_s / sigma_i) x_i - (e^{-h/2} - 1) D(x_i, sigma_i)``,
    ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D(u, sigma_s)``

    (the paper's ``D_i = (1 - 1/(2r)) D(x_i) + 1/(2r) D(u)`` is ``D(u)`` at ``r = 1/2``). The
    step to ``sigma = 0`` returns ``D(x_i, sigma_i)`` (Euler to 0). This is k-diffusion's
    ``sample_dpmpp_2s_ancestral`` with ``eta = 0``, with the same arithmetic (same numbers).

    Order 2; two denoiser calls per step, one on the step to 0.

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
    Probabilistic Models", 2022, arXiv:2211.01095, Algorithm 1; Crowson, k-diffusion.
    """

    name = "dpmpp_2s"
    order = 2.0
    nfe_per_step = 2

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            # Euler to 0, in k-diffusion's arithmetic (equals D to round-off).
            return x + ode_derivative(x, sigma, denoised) * (sigma_next - sigma)
        return _dpmpp_2s_update(denoiser, x, sigma, sigma_next, denoised)


class DPMpp2SAncestral(StochasticOptions, Solver):
    """Ancestral DPM-Solver++(2S), as k-diffusion's ``sample_dpmpp_2s_ancestral``.

    With ``(sigma_down, sigma_up) = ancestral_step(sigma_i, sigma_{i+1}, eta)`` (k-diffusion's
    ``get_ancestral_step``): a deterministic DPM-Solver++(2S) step (``DPMpp2S``) from
    ``sigma_i`` to ``sigma_down``, then fresh noise that brings the level to ``sigma_{i+1}``:

    ``x_{i+1} = 2S(x_i; sigma_i -> sigma_down) + s_noise sigma_up z_i``, ``z_i ~ N(0, I)``.

    Where ``sigma_down = 0`` (the step to ``sigma_{i+1} = 0``, or ``eta`` so large that
    ``sigma_up`` is capped at ``sigma_{i+1}``) the deterministic part is the Euler step
    ``x_i - sigma_i (x_i - D_i) / sigma_i = D_i`` (one denoiser call). No noise is drawn on the
    step to ``sigma_{i+1} = 0``.

    **Weak order 2** measured on a Gaussian target (``docs/solvers.md``; ``euler_ancestral``,
    the same split with an Euler step, measures 1 there). That target makes the SDE linear, so
    the test checks mean and covariance, not the weak order for nonlinear denoisers.
    ``eta = 0`` is exactly ``dpmpp_2s``
    (same numbers; ``self.stochastic`` is then ``False`` and nothing is drawn). Two denoiser
    calls per step (one where ``sigma_down = 0``).

    Same numbers as k-diffusion with the same noise: a ``torch.Generator`` seeded ``s`` gives
    k-diffusion's default ``torch.manual_seed(s)`` + ``randn_like`` stream on CPU, and a
    ``noise_sampler(sigma, sigma_next)`` is called exactly where k-diffusion calls its own.

    Parameters
    ----------
    eta : float
        Ancestral noise fraction, ``>= 0`` (1: ancestral; 0: the ODE).
    s_noise : float
        Scale of the added noise, ``>= 0``.
    noise_sampler : callable, optional
        ``noise_sampler(sigma, sigma_next) -> Tensor`` of ``x``'s shape, standard normal;
        replaces the generator (k-diffusion's option of the same name).

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu (2022), arXiv:2211.01095, Algorithm 1; Ho, Jain, Abbeel
    (2020), arXiv:2006.11239 (ancestral sampling); Crowson, k-diffusion
    ``sample_dpmpp_2s_ancestral``.
    """

    name = "dpmpp_2s_ancestral"
    order = 2.0
    stochastic = True
    nfe_per_step = 2

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0,
                 noise_sampler: NoiseSampler | None = None, **options: Any) -> None:
        super().__init__(**options)
        self._set_noise_options(eta, s_noise, noise_sampler)

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        if float(sigma_down) == 0:
            # Euler method (to sigma_down = 0).
            x = x + ode_derivative(x, sigma, denoised) * (sigma_down - sigma)
        else:
            x = _dpmpp_2s_update(denoiser, x, sigma, sigma_down, denoised)
        if float(sigma_next) > 0 and self.eta:
            x = x + self._noise(x, sigma, sigma_next, generator) * self.s_noise * sigma_up
        return x

"""DPM-Solver++(2S): the second-order singlestep exponential integrator in data prediction."""

from __future__ import annotations

import torch
from torch import Tensor

from ._exponential import data_prediction_update, lambda_, sigma_of_lambda
from .base import CountingDenoiser, Solver, ode_derivative


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
        t, t_next = lambda_(sigma), lambda_(sigma_next)
        h = t_next - t
        r = 1 / 2
        s = t + r * h
        u = data_prediction_update(x, t, s, h * r, denoised)
        return data_prediction_update(x, t, t_next, h, denoiser(u, sigma_of_lambda(s)))

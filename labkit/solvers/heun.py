"""Heun's second-order method on the probability-flow ODE (EDM Algorithm 1, no churn)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CountingDenoiser, Solver, ode_derivative


class Heun(Solver):
    """Heun's method (EDM Algorithm 1 with ``S_churn = 0``): an Euler predictor followed by the
    trapezoidal corrector; the step to ``sigma = 0`` is a plain Euler step.

    Same numbers as k-diffusion's ``sample_heun`` without churn. Reference: Karras et al.
    (2022), arXiv:2206.00364, Algorithm 1.
    """

    name = "heun"
    order = 2.0
    nfe_per_step = 2

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        dt = sigma_next - sigma
        d = ode_derivative(x, sigma, denoiser(x, sigma))
        x_euler = x + d * dt
        if float(sigma_next) == 0:
            return x_euler
        # Apply 2nd order correction.
        d_next = ode_derivative(x_euler, sigma_next, denoiser(x_euler, sigma_next))
        return x + (d + d_next) / 2 * dt

"""Euler's method on the probability-flow ODE (first order)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CountingDenoiser, Solver, ode_derivative


class Euler(Solver):
    """Euler's method: ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (x_i - D(x_i, sigma_i)) / sigma_i``.

    Same numbers as k-diffusion's ``sample_euler`` without churn. Reference: Karras et al.
    (2022), arXiv:2206.00364, Sec. 3.
    """

    name = "euler"
    order = 1.0
    nfe_per_step = 1

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = ode_derivative(x, sigma, denoiser(x, sigma))
        return x + d * (sigma_next - sigma)

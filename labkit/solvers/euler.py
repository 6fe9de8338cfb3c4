"""Euler's method on the probability-flow ODE (first order), with optional EDM churn."""

from __future__ import annotations

import torch
from torch import Tensor

from ._churn import ChurnedSolver
from .base import CountingDenoiser, ode_derivative


class Euler(ChurnedSolver):
    """Euler's method, optionally with EDM churn (Karras et al. 2022, Algorithm 2, Euler steps).

    ``x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) (x_hat - D(x_hat, sigma_hat)) / sigma_hat``,

    where ``(x_hat, sigma_hat)`` is ``(x_i, sigma_i)`` raised by the churn step
    (``labkit.solvers._churn.Churn``): ``sigma_hat = (1 + gamma_i) sigma_i`` and
    ``x_hat = x_i + s_noise sqrt(sigma_hat^2 - sigma_i^2) eps``. Without churn
    (``s_churn = 0``, the default) it is the plain Euler step and deterministic.

    Order 1 (the deterministic global error; with churn the weak error is also first order,
    see ``docs/solvers.md``). One denoiser call per step. Same numbers as k-diffusion's
    ``sample_euler`` with the same options and, with churn, the same noise (a
    ``torch.Generator`` seeded ``s`` gives the stream of ``torch.manual_seed(s)`` on CPU).

    Parameters
    ----------
    s_churn, s_tmin, s_tmax, s_noise : float
        EDM churn options (see ``Churn``); ``s_churn > 0`` makes the instance stochastic
        (``self.stochastic`` is then ``True``, overriding the class attribute ``False``).

    References
    ----------
    Karras, Aittala, Aila, Laine (2022), arXiv:2206.00364, Sec. 3 and Algorithm 2.
    """

    name = "euler"
    order = 1.0
    nfe_per_step = 1

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        x, sigma_hat = self.churn(x, i, sigmas, generator)
        d = ode_derivative(x, sigma_hat, denoiser(x, sigma_hat))
        return x + d * (sigmas[i + 1] - sigma_hat)

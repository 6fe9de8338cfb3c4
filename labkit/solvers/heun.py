"""Heun's second-order method on the probability-flow ODE (EDM Algorithms 1 and 2)."""

from __future__ import annotations

import torch
from torch import Tensor

from ._churn import ChurnedSolver
from .base import CountingDenoiser, ode_derivative


class Heun(ChurnedSolver):
    """Heun's method, optionally with EDM churn (Karras et al. 2022, Algorithms 1 and 2).

    From ``(x_hat, sigma_hat)`` (``(x_i, sigma_i)`` raised by the churn step, see ``Churn``;
    unchanged when ``s_churn = 0``), with ``h = sigma_{i+1} - sigma_hat`` and
    ``d(x, sigma) = (x - D(x, sigma)) / sigma``: the Euler predictor
    ``x' = x_hat + h d(x_hat, sigma_hat)``, then the trapezoidal corrector
    ``x_{i+1} = x_hat + h (d(x_hat, sigma_hat) + d(x', sigma_{i+1})) / 2``. The step to
    ``sigma = 0`` is the Euler predictor alone.

    Order 2 (the deterministic global error; with churn the weak error is first order, see
    ``docs/solvers.md``). Two denoiser calls per step, one on the step to 0. Same numbers as
    k-diffusion's ``sample_heun`` with the same options and, with churn, the same noise.

    Parameters
    ----------
    s_churn, s_tmin, s_tmax, s_noise : float
        EDM churn options (see ``Churn``); ``s_churn > 0`` makes the instance stochastic
        (``self.stochastic`` is then ``True``, overriding the class attribute ``False``).

    References
    ----------
    Karras, Aittala, Aila, Laine (2022), arXiv:2206.00364, Algorithms 1 and 2.
    """

    name = "heun"
    order = 2.0
    nfe_per_step = 2

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        x, sigma_hat = self.churn(x, i, sigmas, generator)
        sigma_next = sigmas[i + 1]
        dt = sigma_next - sigma_hat
        d = ode_derivative(x, sigma_hat, denoiser(x, sigma_hat))
        x_euler = x + d * dt
        if float(sigma_next) == 0:
            return x_euler
        # Apply 2nd order correction.
        d_next = ode_derivative(x_euler, sigma_next, denoiser(x_euler, sigma_next))
        return x + (d + d_next) / 2 * dt

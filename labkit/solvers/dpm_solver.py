"""Singlestep DPM-Solver of orders 1-3 in noise prediction (Lu et al. 2022)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._exponential import (data_prediction_step, lambda_, noise_prediction_update, phi,
                           sigma_of_lambda)
from .base import CountingDenoiser, Solver


class DPMSolver(Solver):
    """Singlestep DPM-Solver-``k``, ``k = order`` (Lu et al. 2022, Algorithms 1 and 2).

    Noise prediction ``eps(x, lambda_) = (x - D(x, sigma)) / sigma``, ``lambda_ = -log sigma``
    (EDM scaling, ``alpha = 1``), ``h = lambda_{i+1} - lambda_i``, ``eps_i = eps(x_i, lambda_i)``,
    ``phi_k`` as in ``labkit.solvers._exponential``:

    - order 1: ``x_{i+1} = x_i - sigma_{i+1} (e^h - 1) eps_i`` (= DDIM);
    - order 2 (``r1 = 1/2``): ``u = x_i - sigma_s (e^{r1 h} - 1) eps_i`` at
      ``s = lambda_i + r1 h``; ``x_{i+1} = x_i - sigma_{i+1} (e^h - 1) eps_i
      - sigma_{i+1} / (2 r1) (e^h - 1) (eps(u, s) - eps_i)``;
    - order 3 (``r1 = 1/3``, ``r2 = 2/3``): ``u1`` as ``u`` above at ``s1``;
      ``D1 = eps(u1, s1) - eps_i``; ``u2 = x_i - sigma_{s2} (e^{r2 h} - 1) eps_i
      - sigma_{s2} (r2 / r1) (r2 h) phi_2(r2 h) D1``; ``D2 = eps(u2, s2) - eps_i``;
      ``x_{i+1} = x_i - sigma_{i+1} (e^h - 1) eps_i - sigma_{i+1} (1 / r2) h phi_2(h) D2``
      (``h phi_2(h) = (e^h - 1) / h - 1``, the paper's form, evaluated without cancellation).

    The step to ``sigma_{i+1} = 0`` (``h = inf``, where the stages are undefined) is
    DPM-Solver-1, whose limit is ``x_{i+1} = D(x_i, sigma_i)``: one denoiser call.

    Declared order ``order`` (measured 1.00, 2.00, 3.0 on a Gaussian and a mixture, see
    ``docs/solvers.md``); ``order`` denoiser calls per step, one on the step to 0.
    Same arithmetic as k-diffusion's ``DPMSolver.dpm_solver_{1,2,3}_step``.

    Parameters
    ----------
    order : int
        1, 2 or 3.

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
    Model Sampling in Around 10 Steps", 2022, arXiv:2206.00927, Algorithms 1 and 2.
    """

    name = "dpm_solver"
    order = 3.0
    nfe_per_step = 3

    def __init__(self, order: int = 3, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(order, bool) or not isinstance(order, int):
            raise TypeError(f"order must be an int (1, 2 or 3), got {type(order).__name__}")
        if order not in (1, 2, 3):
            raise ValueError(f"order must be 1, 2 or 3, got {order}")
        self.order = float(order)           # type: ignore[misc]  # depends on the option
        self.nfe_per_step = order           # type: ignore[misc]

    def __repr__(self) -> str:
        return f"DPMSolver(order={int(self.order)})"

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        if float(sigma_next) == 0:
            # DPM-Solver-1 to lambda_ = inf: its limit is the denoiser output.
            return data_prediction_step(x, sigma, sigma_next, denoiser(x, sigma))
        t, t_next = lambda_(sigma), lambda_(sigma_next)
        h = t_next - t
        eps = (x - denoiser(x, sigma)) / sigma_of_lambda(t)
        x_1 = noise_prediction_update(x, t_next, h, eps)
        if self.order == 1:
            return x_1
        r1 = 1 / 2 if self.order == 2 else 1 / 3
        s1 = t + r1 * h
        u1 = noise_prediction_update(x, s1, r1 * h, eps)
        d1 = self._eps(denoiser, u1, s1) - eps
        if self.order == 2:
            return x_1 - sigma_of_lambda(t_next) / (2 * r1) * h.expm1() * d1
        r2 = 2 / 3
        s2 = t + r2 * h
        u2 = (noise_prediction_update(x, s2, r2 * h, eps)
              - sigma_of_lambda(s2) * (r2 / r1) * (r2 * h) * phi(2, r2 * h) * d1)
        d2 = self._eps(denoiser, u2, s2) - eps
        return x_1 - sigma_of_lambda(t_next) / r2 * h * phi(2, h) * d2

    @staticmethod
    def _eps(denoiser: CountingDenoiser, x: Tensor, t: Tensor) -> Tensor:
        sigma = sigma_of_lambda(t)
        return (x - denoiser(x, sigma)) / sigma

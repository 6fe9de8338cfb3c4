"""DDIM: the deterministic first-order sampler of Song, Meng and Ermon (2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import CountingDenoiser, Solver


class DDIM(Solver):
    """Deterministic DDIM (eta = 0): ``x_{i+1} = D_i + (sigma_{i+1} / sigma_i) (x_i - D_i)``.

    ``D_i = D(x_i, sigma_i)``. In EDM variables (``alpha = 1``) this is the first-order
    exponential integrator, i.e. DPM-Solver-1 and DPM-Solver++(1)
    (``x_{i+1} = e^{-h} x_i + (1 - e^{-h}) D_i``, ``h = lambda_{i+1} - lambda_i``,
    ``lambda_ = -log sigma``; Lu et al. 2022), and algebraically Euler in ``sigma``:
    ``x_i + (sigma_{i+1} - sigma_i) (x_i - D_i) / sigma_i`` (the tests check equality with
    ``euler`` to round-off). The step to ``sigma = 0`` returns ``D_i``.

    Order 1; one denoiser call per step.

    References
    ----------
    Song, Meng, Ermon, "Denoising Diffusion Implicit Models", 2021, arXiv:2010.02502, Eq. (12)
    with sigma_t = 0; Lu et al. 2022, arXiv:2206.00927, Sec. 4.1 (DDIM = DPM-Solver-1).
    """

    name = "ddim"
    order = 1.0
    nfe_per_step = 1

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        return denoised + (sigma_next / sigma) * (x - denoised)

"""DDPM ancestral sampling (Ho, Jain, Abbeel 2020, Algorithm 2) in EDM variables.

The step ``sigma -> sigma'`` draws from the forward process's posterior
``q(x_{sigma'} | x_sigma, x0)`` with ``x0`` replaced by the denoiser's estimate
``D = D(x_sigma, sigma)``. For ``x_sigma = x0 + sigma eps`` (VE, and every process in the
unscaled variable ``x_hat = x_t / s(t)``) that posterior is

``N(D + (sigma'^2 / sigma^2) (x - D), sigma'^2 (1 - sigma'^2 / sigma^2) I)``;

the VP process gives the same law for ``x_hat`` because ``s(t)`` is deterministic (see
``docs/solvers.md`` for the derivation; ``tests/solvers/test_ddpm_langevin.py`` checks it
against DDPM's discrete-time formulas).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._noise import standard_normal
from .._checks import check_choice
from .base import CountingDenoiser, Solver

VARIANCES = ("posterior", "beta")


def ddpm_coefficients(sigma: Tensor, sigma_next: Tensor,
                      variance: str = "posterior") -> tuple[Tensor, Tensor]:
    """Coefficients of one DDPM step: ``x' = D + ratio (x - D) + std z``.

    ``ratio = sigma'^2 / sigma^2`` (the posterior mean, DDPM eq. 7 in EDM variables) and

    - ``variance="posterior"`` (DDPM's ``fixed_small``, ``sigma_t^2 = beta_tilde_t``):
      ``std^2 = sigma'^2 (1 - sigma'^2 / sigma^2)``;
    - ``variance="beta"`` (DDPM's ``fixed_large``, ``sigma_t^2 = beta_t``): with the VP scaling
      ``s = 1 / sqrt(1 + sigma^2)``, ``beta_t = 1 - s^2 / s'^2 = (sigma^2 - sigma'^2) /
      (1 + sigma^2)`` in units of ``x_{t-1} = s' x_hat'``, so
      ``std^2 = beta_t / s'^2 = (sigma^2 - sigma'^2) (1 + sigma'^2) / (1 + sigma^2)``.

    Both give ``std = 0`` at ``sigma' = 0``.

    Parameters
    ----------
    sigma, sigma_next : 0-d Tensor
        ``sigma > sigma_next >= 0``.
    variance : {"posterior", "beta"}

    Returns
    -------
    ratio, std : 0-d Tensor
    """
    ratio = (sigma_next / sigma) ** 2
    if variance == "posterior":
        var = sigma_next ** 2 * (1 - ratio)
    elif variance == "beta":
        var = (sigma ** 2 - sigma_next ** 2) * (1 + sigma_next ** 2) / (1 + sigma ** 2)
        var = var * (sigma_next > 0)  # DDPM Algorithm 2: z = 0 on the last step (t = 1)
    else:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    return ratio, var.clamp_min(0).sqrt()


class DDPM(Solver):
    """DDPM ancestral sampler: ``x_{i+1} = D_i + r_i (x_i - D_i) + std_i z_i``.

    ``D_i = D(x_i, sigma_i)``, ``r_i = sigma_{i+1}^2 / sigma_i^2``, ``z_i ~ N(0, I)`` and
    ``std_i`` from :func:`ddpm_coefficients`:

    - ``variance="posterior"`` (default; DDPM's ``fixed_small``, ``sigma_t^2 = beta_tilde_t``):
      ``std_i^2 = sigma_{i+1}^2 (1 - r_i)``. The step is then an exact draw from
      ``q(x_{sigma_{i+1}} | x_{sigma_i}, x0 = D_i)``, and it is the same map as
      ``euler_ancestral`` with ``eta = 1`` (``sigma_down = sigma_{i+1}^2 / sigma_i``,
      ``sigma_up = std_i``): the same numbers up to round-off for the same generator.
    - ``variance="beta"`` (DDPM's ``fixed_large``, ``sigma_t^2 = beta_t`` of the VP process
      with ``s = 1 / sqrt(1 + sigma^2)``): ``std_i^2 = (sigma_i^2 - sigma_{i+1}^2)
      (1 + sigma_{i+1}^2) / (1 + sigma_i^2)``. Not a posterior draw; it is exact for the
      target ``N(0, I)`` (where posterior is exact for a point mass), and on coarse grids its
      marginals are off for other targets (measured in ``docs/solvers.md``). Depends on the
      VP scaling, i.e. on the data scale ``sigma_data = 1``.

    The step to ``sigma_{i+1} = 0`` returns ``D_i`` and draws nothing (DDPM's ``z = 0`` at
    ``t = 1``); grids ending above 0 draw noise on every step.

    Weak order 1 for both variances (measured on a Gaussian target, see ``docs/solvers.md``).
    One denoiser call per step.

    Parameters
    ----------
    variance : {"posterior", "beta"}
        The reverse-step variance (``fixed_small`` / ``fixed_large``).

    References
    ----------
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020,
    arXiv:2006.11239, Algorithm 2 and eqs. 6-7 (the official code's
    ``model_var_type = fixedsmall / fixedlarge``); Karras et al. (2022), arXiv:2206.00364
    (EDM variables); k-diffusion ``sample_euler_ancestral`` (the same map as
    ``variance="posterior"``).
    """

    name = "ddpm"
    order = 1.0
    stochastic = True
    nfe_per_step = 1

    def __init__(self, variance: str = "posterior", **options: Any) -> None:
        super().__init__(**options)
        self.variance = check_choice(variance, "variance", VARIANCES)

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            return denoised
        ratio, std = ddpm_coefficients(sigma, sigma_next, self.variance)
        x = denoised + ratio * (x - denoised)
        return x + standard_normal(x, generator) * std

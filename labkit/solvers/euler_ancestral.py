"""Ancestral sampling with Euler steps (k-diffusion's ``sample_euler_ancestral``)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._churn import _real
from ._noise import standard_normal
from .base import CountingDenoiser, Solver, ode_derivative


def ancestral_step(sigma: Tensor, sigma_next: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split the step ``sigma -> sigma_next`` into a deterministic part and fresh noise.

    ``sigma_up = min(sigma_next, eta sqrt(sigma_next^2 (sigma^2 - sigma_next^2) / sigma^2))``,
    ``sigma_down = sqrt(sigma_next^2 - sigma_up^2)``: an ODE step to ``sigma_down`` followed by
    noise of standard deviation ``sigma_up`` lands at noise level ``sigma_next``. With
    ``eta = 1`` this is the ancestral (DDPM posterior) step; ``eta = 0`` gives
    ``(sigma_next, 0)``, the plain ODE step.

    Parameters
    ----------
    sigma, sigma_next : 0-d Tensor
        ``sigma > sigma_next >= 0``.
    eta : float
        Fraction of the ancestral noise, ``>= 0``.

    Returns
    -------
    sigma_down, sigma_up : 0-d Tensor (``sigma_up`` is the float 0 when ``eta == 0``)

    References
    ----------
    Crowson, k-diffusion ``get_ancestral_step``; Ho, Jain, Abbeel (2020), arXiv:2006.11239;
    Song, Meng, Ermon (2020), arXiv:2010.02502 (the ``eta`` family).
    """
    if not eta:
        return sigma_next, 0.0
    sigma_up = min(sigma_next,
                   eta * (sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2) ** 0.5)
    sigma_down = (sigma_next ** 2 - sigma_up ** 2) ** 0.5
    return sigma_down, sigma_up


class EulerAncestral(Solver):
    """Euler ancestral sampler: an Euler step to ``sigma_down``, then fresh noise.

    With ``(sigma_down, sigma_up) = ancestral_step(sigma_i, sigma_{i+1}, eta)`` and
    ``d(x, sigma) = (x - D(x, sigma)) / sigma``:

    ``x_{i+1} = x_i + (sigma_down - sigma_i) d(x_i, sigma_i) + s_noise sigma_up z_i``,
    ``z_i ~ N(0, I)``; no noise is drawn on the step to ``sigma_{i+1} = 0`` (``sigma_up = 0``
    there, so that step is deterministic: ``x_N = D(x_{N-1}, sigma_{N-1})``).

    Weak order 1 (measured 1.0 on a Gaussian target, see ``docs/solvers.md``). One denoiser
    call per step. Same numbers as k-diffusion's ``sample_euler_ancestral(eta, s_noise)`` with
    the same noise (a ``torch.Generator`` seeded ``s`` gives ``torch.manual_seed(s)``'s stream
    on CPU). ``eta = 0`` is exactly ``euler`` and is deterministic (``self.stochastic`` is then
    ``False``, overriding the class attribute).

    Parameters
    ----------
    eta : float
        Ancestral noise fraction, ``>= 0`` (1: ancestral/DDPM-like; 0: the ODE).
    s_noise : float
        Scale of the added noise, ``>= 0``.

    References
    ----------
    Ho, Jain, Abbeel, "Denoising Diffusion Probabilistic Models", 2020, arXiv:2006.11239;
    Karras et al. (2022), arXiv:2206.00364; Crowson, k-diffusion ``sample_euler_ancestral``.
    """

    name = "euler_ancestral"
    order = 1.0
    stochastic = True
    nfe_per_step = 1

    def __init__(self, eta: float = 1.0, s_noise: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.eta = _real(eta, "eta")
        self.s_noise = _real(s_noise, "s_noise")
        self.stochastic = self.eta > 0  # type: ignore[misc]  # eta = 0 is the ODE

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = ode_derivative(x, sigma, denoiser(x, sigma))
        sigma_down, sigma_up = ancestral_step(sigma, sigma_next, self.eta)
        x = x + d * (sigma_down - sigma)
        if float(sigma_next) > 0 and self.eta:
            noise = standard_normal(x, generator)
            x = x + noise * self.s_noise * sigma_up
        return x

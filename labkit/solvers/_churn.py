"""The EDM "churn" step shared by ``euler`` and ``heun`` (Karras et al. 2022, Algorithm 2).

Before an ODE step from ``sigma_i``, churn raises the noise level to
``sigma_hat = (1 + gamma_i) sigma_i`` by adding fresh Gaussian noise of variance
``sigma_hat^2 - sigma_i^2``; the ODE step then starts from ``(x_hat, sigma_hat)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from numbers import Real

import torch
from torch import Tensor

from ._noise import standard_normal
from .base import Solver


def _real(value: object, name: str, *, allow_inf: bool = False) -> float:
    """A non-negative real option (``bool`` rejected); ``inf`` only if ``allow_inf``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
        kind = "a non-negative number or inf" if allow_inf else "a finite non-negative number"
        raise ValueError(f"{name} must be {kind}, got {value}")
    return value


@dataclass(frozen=True)
class Churn:
    """EDM churn options and the noise-raising step of Karras et al. (2022), Algorithm 2.

    With ``N = len(sigmas) - 1`` steps,

    ``gamma_i = min(s_churn / N, sqrt(2) - 1)`` if ``s_tmin <= sigma_i <= s_tmax`` else ``0``,
    ``sigma_hat = (1 + gamma_i) sigma_i``,
    ``x_hat = x_i + s_noise sqrt(sigma_hat^2 - sigma_i^2) eps``, ``eps ~ N(0, I)``.

    The semantics are k-diffusion's ``sample_euler`` / ``sample_heun``: when ``s_churn > 0``
    a standard normal ``eps`` of ``x``'s shape is drawn at *every* step, also where
    ``gamma_i = 0`` (outside ``[s_tmin, s_tmax]``), so that the noise stream, and hence the
    numbers, match k-diffusion's for the same seed. With ``s_churn = 0`` (the default) nothing
    is drawn and ``x_hat = x_i``, ``sigma_hat = sigma_i`` exactly.

    Parameters
    ----------
    s_churn : float
        Total churn, ``>= 0``; ``gamma_i = min(s_churn / N, sqrt(2) - 1)``.
    s_tmin, s_tmax : float
        Churn only where ``s_tmin <= sigma_i <= s_tmax``; ``0 <= s_tmin <= s_tmax <= inf``.
    s_noise : float
        Scale of the added noise, ``>= 0`` (EDM's ``S_noise``; 1 keeps the marginals exact).

    References
    ----------
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative
    Models", NeurIPS 2022, arXiv:2206.00364, Algorithm 2.
    """

    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self) -> None:
        for name, allow_inf in (("s_churn", False), ("s_tmin", False), ("s_tmax", True),
                                ("s_noise", False)):
            object.__setattr__(self, name, _real(getattr(self, name), name, allow_inf=allow_inf))
        if self.s_tmin > self.s_tmax:
            raise ValueError(f"s_tmin must be <= s_tmax, got s_tmin={self.s_tmin} and "
                             f"s_tmax={self.s_tmax}")

    @property
    def active(self) -> bool:
        """Whether a step draws noise (``s_churn > 0``)."""
        return self.s_churn > 0

    def __call__(self, x: Tensor, i: int, sigmas: Tensor,
                 generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Return ``(x_hat, sigma_hat)`` for the step from ``sigmas[i]``."""
        sigma = sigmas[i]
        if not self.active:
            return x, sigma
        in_range = self.s_tmin <= float(sigma) <= self.s_tmax
        gamma = min(self.s_churn / (len(sigmas) - 1), 2 ** 0.5 - 1) if in_range else 0.0
        # Drawn even where gamma = 0, as k-diffusion does: keeps the noise stream aligned.
        eps = standard_normal(x, generator)
        eps = eps * self.s_noise
        sigma_hat = sigma * (gamma + 1)
        if gamma > 0:
            x = x + eps * (sigma_hat ** 2 - sigma ** 2) ** 0.5
        return x, sigma_hat


class ChurnedSolver(Solver):
    """A solver with EDM's churn options (``s_churn``, ``s_tmin``, ``s_tmax``, ``s_noise``).

    Subclasses call ``self.churn(x, i, sigmas, generator)`` at the start of a step to get the
    raised state and ``sigma_hat``. The instance is stochastic only when ``s_churn > 0``.
    """

    def __init__(self, s_churn: float = 0.0, s_tmin: float = 0.0, s_tmax: float = math.inf,
                 s_noise: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self.churn = Churn(s_churn, s_tmin, s_tmax, s_noise)
        self.stochastic = self.churn.active  # type: ignore[misc]  # depends on s_churn

"""Sigma grids: the discretisations samplers integrate over.

A grid is a 1-D tensor ``sigmas`` of length ``N + 1`` (``N`` steps), finite, strictly decreasing,
positive except for an optional final ``0`` (the denoise-to-zero step), as in k-diffusion's
``get_sigmas_*`` functions.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._checks import DEFAULT_DTYPE, check_positive_int


def _check_sigma_range(sigma_min: Any, sigma_max: Any) -> tuple[float, float]:
    for name, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(v).__name__}")
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be finite and > 0, got {v}")
    if not sigma_min < sigma_max:
        raise ValueError(f"sigma_min must be < sigma_max, got sigma_min={sigma_min}, "
                         f"sigma_max={sigma_max}")
    return float(sigma_min), float(sigma_max)


def karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, *,
           dtype: torch.dtype = DEFAULT_DTYPE, device: torch.device | str | None = None) -> Tensor:
    """Karras et al. (2022) grid: ``sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
    sigma_max^(1/rho)))^rho`` for ``i = 0..n-1``, followed by a final ``0``.

    Parameters
    ----------
    n : int
        Number of positive sigmas (``n >= 2``, so that both ends are present); the grid has
        ``n + 1`` entries and ``n`` steps.
    sigma_min, sigma_max : float
        Smallest and largest positive sigma, ``0 < sigma_min < sigma_max``.
    rho : float
        Warping exponent (7 in EDM); ``rho = 1`` is uniform in sigma.
    dtype, device : optional
        Of the returned tensor (float64 on CPU by default).

    Returns
    -------
    Tensor of shape ``(n + 1,)``, strictly decreasing, ending in 0.

    References
    ----------
    Karras, Aittala, Aila, Laine, "Elucidating the Design Space of Diffusion-Based Generative
    Models", NeurIPS 2022, arXiv:2206.00364, Eq. (5).

    Examples
    --------
    >>> karras(4, 0.002, 80.0)[-1].item()
    0.0
    """
    n = check_positive_int(n, "n", minimum=2)
    sigma_min, sigma_max = _check_sigma_range(sigma_min, sigma_max)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho) \
            or rho <= 0:
        raise ValueError(f"rho must be a finite float > 0, got {rho!r}")
    ramp = torch.linspace(0, 1, n, dtype=dtype, device=device)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def validate(sigmas: Any, name: str = "sigmas") -> Tensor:
    """Check that ``sigmas`` is a valid grid and return it as a floating tensor.

    Valid: a 1-D floating tensor with at least 2 entries (one step), finite, strictly
    decreasing, and positive except for an optional final 0.

    Raises
    ------
    TypeError
        If ``sigmas`` is not a floating tensor.
    ValueError
        Naming the first violated rule.
    """
    if not isinstance(sigmas, Tensor):
        raise TypeError(f"{name} must be a 1-D torch.Tensor of decreasing sigmas, "
                        f"got {type(sigmas).__name__}")
    if not sigmas.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {sigmas.dtype}")
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise ValueError(f"{name} must be 1-D with at least 2 entries (one step), "
                         f"got shape {tuple(sigmas.shape)}")
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        i = int(torch.nonzero(sigmas[1:] >= sigmas[:-1])[0])
        raise ValueError(f"{name} must be strictly decreasing, but {name}[{i + 1}] = "
                         f"{float(sigmas[i + 1])} >= {name}[{i}] = {float(sigmas[i])}")
    if not bool((sigmas[:-1] > 0).all()) or float(sigmas[-1]) < 0:
        raise ValueError(f"{name} must be positive except for an optional final 0")
    return sigmas

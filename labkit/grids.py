"""Sigma grids: the discretisations samplers integrate over.

A grid is a 1-D tensor ``sigmas`` of length ``N + 1`` (``N`` steps), finite, strictly decreasing,
positive except for an optional final ``0`` (the denoise-to-zero step), as in k-diffusion's
``get_sigmas_*`` functions.

- :func:`karras`: uniform in ``sigma^(1/rho)`` (EDM; ``rho = 1`` is uniform in sigma);
- :func:`loglinear`: uniform in ``log sigma`` = uniform log-SNR;
- :func:`polyexponential`: ``log sigma`` a power ``rho`` of a uniform ramp;
- :func:`uniform_t`: a process's sigmas at equally spaced times;
- :func:`validate`: check any grid, including hand-made ones.

See ``docs/solvers.md`` ("Sigma grids") for the formulas side by side.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from ._checks import DEFAULT_DTYPE, check_positive_int
from .processes import get_process


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
    rho = _check_rho(rho)
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


# ---------------------------------------------------------------------------------- shared core
def _check_rho(rho: Any) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)):
        raise TypeError(f"rho must be a finite float > 0, got {type(rho).__name__}")
    if not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"rho must be a finite float > 0, got {rho!r}")
    return float(rho)


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype (e.g. torch.float64), got {dtype!r}")
    return dtype


def _with_zero(sigmas: Tensor, hint: str) -> Tensor:
    """Append the final 0 and check that no two sigmas collapsed to one float of the dtype."""
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        i = int(torch.nonzero(sigmas[1:] >= sigmas[:-1])[0])
        raise ValueError(f"the grid is not representable in {sigmas.dtype}: sigmas {i} and "
                         f"{i + 1} both round to {float(sigmas[i])}; {hint}")
    return validate(torch.cat([sigmas, sigmas.new_zeros(1)]))


def _log_polynomial(n: int, sigma_min: float, sigma_max: float, rho: float, dtype: torch.dtype,
                    device: torch.device | str | None) -> Tensor:
    """``log sigma_i = log sigma_min + (1 - i/(n-1))^rho log(sigma_max / sigma_min)``, zero-ended.

    The end points are set exactly (``exp(log x)`` may be off by an ulp).
    """
    ramp = torch.linspace(1, 0, n, dtype=dtype, device=device) ** rho
    sigmas = sigma_min * torch.exp(ramp * math.log(sigma_max / sigma_min))
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    return _with_zero(sigmas, "use fewer steps, a rho closer to 1 or a wider sigma range")


# ---------------------------------------------------------------------------------- grids
def loglinear(n: int, sigma_min: float, sigma_max: float, *, dtype: torch.dtype = DEFAULT_DTYPE,
              device: torch.device | str | None = None) -> Tensor:
    """Grid uniform in ``log sigma``, i.e. uniform in log-SNR ``lambda = -log sigma``.

    ``sigma_i = sigma_max (sigma_min / sigma_max)^(i/(n-1))`` for ``i = 0..n-1``, followed by a
    final ``0``: consecutive ratios ``sigma_{i+1} / sigma_i`` are all equal. This is
    k-diffusion's ``get_sigmas_exponential`` and the "logSNR" (uniform ``lambda``) time steps
    of DPM-Solver, for which the exponential integrator's step ``h = lambda_{i+1} - lambda_i``
    is constant.

    Parameters
    ----------
    n : int
        Number of positive sigmas, ``n >= 2``; the grid has ``n + 1`` entries and ``n`` steps.
    sigma_min, sigma_max : float
        Smallest and largest positive sigma, ``0 < sigma_min < sigma_max``, both finite.
    dtype, device : optional
        Of the returned tensor (float64 on CPU by default).

    Returns
    -------
    Tensor of shape ``(n + 1,)``, strictly decreasing, with ``sigmas[0] = sigma_max``,
    ``sigmas[n - 1] = sigma_min`` exactly and ``sigmas[n] = 0``.

    Raises
    ------
    TypeError, ValueError
        On bad arguments, or if two sigmas round to the same number in ``dtype``.

    References
    ----------
    Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic
    Model Sampling in Around 10 Steps", NeurIPS 2022, arXiv:2206.00927, Sec. 3.3 and App. D.1.
    Crowson, k-diffusion, ``k_diffusion/sampling.py::get_sigmas_exponential``.

    Examples
    --------
    >>> [round(v, 12) for v in loglinear(3, 1.0, 100.0).tolist()]
    [100.0, 10.0, 1.0, 0.0]
    """
    return polyexponential(n, sigma_min, sigma_max, 1.0, dtype=dtype, device=device)


def polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0, *,
                    dtype: torch.dtype = DEFAULT_DTYPE,
                    device: torch.device | str | None = None) -> Tensor:
    """Grid polynomial in ``log sigma``: ``log sigma`` is a power ``rho`` of a uniform ramp.

    ``log sigma_i = log sigma_min + (1 - i/(n-1))^rho (log sigma_max - log sigma_min)`` for
    ``i = 0..n-1``, followed by a final ``0``. ``rho = 1`` is :func:`loglinear`; ``rho > 1``
    puts more steps at small sigma. This is k-diffusion's ``get_sigmas_polyexponential``.

    A grid *polynomial in sigma* (uniform in ``sigma^(1/rho)``) is :func:`karras`; ``rho = 1``
    there is uniform in sigma. labkit therefore has no separate ``polynomial`` grid.

    Parameters
    ----------
    n : int
        Number of positive sigmas, ``n >= 2``; the grid has ``n + 1`` entries and ``n`` steps.
    sigma_min, sigma_max : float
        Smallest and largest positive sigma, ``0 < sigma_min < sigma_max``, both finite.
    rho : float
        Exponent of the ramp, finite and ``> 0``.
    dtype, device : optional
        Of the returned tensor (float64 on CPU by default).

    Returns
    -------
    Tensor of shape ``(n + 1,)``, strictly decreasing, with ``sigmas[0] = sigma_max``,
    ``sigmas[n - 1] = sigma_min`` exactly and ``sigmas[n] = 0``.

    Raises
    ------
    TypeError, ValueError
        On bad arguments, or if two sigmas round to the same number in ``dtype`` (a large
        ``rho`` with many steps squeezes the last steps below the resolution of the dtype).

    References
    ----------
    Crowson, k-diffusion, ``k_diffusion/sampling.py::get_sigmas_polyexponential`` ("an
    polynomial in log sigma noise schedule").

    Examples
    --------
    >>> polyexponential(3, 1.0, 100.0, rho=2.0).tolist()
    [100.0, 3.1622776601683795, 1.0, 0.0]
    """
    n = check_positive_int(n, "n", minimum=2)
    sigma_min, sigma_max = _check_sigma_range(sigma_min, sigma_max)
    return _log_polynomial(n, sigma_min, sigma_max, _check_rho(rho), _check_dtype(dtype), device)


def uniform_t(n: int, process: Any, t_min: float | None = None, t_max: float | None = None, *,
              dtype: torch.dtype = DEFAULT_DTYPE,
              device: torch.device | str | None = None) -> Tensor:
    """Grid of the noise levels of a process at equally spaced times.

    ``sigma_i = process.sigma(t_max + i/(n-1) (t_min - t_max))`` for ``i = 0..n-1``, followed by
    a final ``0``. For the linear VP process with ``t`` from 1 to ``epsilon_s`` this is
    k-diffusion's ``get_sigmas_vp`` (EDM's "VP" discretisation); for the cosine process it is
    the uniform time steps of DDPM/DDIM in continuous time; for VE it coincides with
    :func:`loglinear`, and for EDM (``sigma = t``) with ``karras(..., rho=1)``.

    Parameters
    ----------
    n : int
        Number of positive sigmas, ``n >= 2``; the grid has ``n + 1`` entries and ``n`` steps.
    process : str or labkit.processes.Process
        A process or its name in ``labkit.processes.PROCESSES`` (built with default parameters).
    t_min, t_max : float, optional
        Time range, ``t_lower <= t_min < t_max < t_singular`` of the process, with
        ``sigma(t_min) > 0``; the process's own ``t_min`` and ``t_max`` by default.
    dtype, device : optional
        Of the returned tensor (float64 on CPU by default); the times are built in it.

    Returns
    -------
    Tensor of shape ``(n + 1,)``, strictly decreasing, ending in 0;
    ``process.t_of_sigma(sigmas[:-1])`` is equally spaced.

    References
    ----------
    Song et al., "Score-Based Generative Modeling through Stochastic Differential Equations",
    ICLR 2021, arXiv:2011.13456. Song, Meng, Ermon, "Denoising Diffusion Implicit Models",
    ICLR 2021, arXiv:2010.02502, Sec. 4.2 and App. C.1 (uniform time steps). Karras et al.
    (2022), arXiv:2206.00364, Table 1 (the VP time steps). Crowson, k-diffusion,
    ``get_sigmas_vp``.

    Examples
    --------
    >>> s = uniform_t(10, "vp")
    >>> round(s[0].item(), 3), s[-1].item()
    (152.167, 0.0)
    """
    n = check_positive_int(n, "n", minimum=2)
    proc = get_process(process)
    lo = proc.t_min if t_min is None else _check_time(t_min, "t_min")
    hi = proc.t_max if t_max is None else _check_time(t_max, "t_max")
    if not proc.t_lower <= lo < hi < proc.t_singular:
        raise ValueError(f"t_min and t_max must satisfy {proc.t_lower} <= t_min < t_max < "
                         f"{proc.t_singular} for {type(proc).__name__}, got t_min={lo}, "
                         f"t_max={hi}")
    t = torch.linspace(hi, lo, n, dtype=_check_dtype(dtype), device=device)
    sigmas = proc.sigma(t)
    if not float(sigmas[-1]) > 0:
        raise ValueError(f"t_min must have sigma(t_min) > 0, got sigma({lo}) = "
                         f"{float(sigmas[-1])} for {proc!r}")
    return _with_zero(sigmas, "use fewer steps or float64")


def _check_time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or None, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)

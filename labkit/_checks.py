"""Argument validation shared by the whole package.

Every public entry point validates its inputs here, so that bad input raises a ``TypeError`` or
``ValueError`` that names the argument and the expected form instead of producing silent NaNs.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch import Tensor

DEFAULT_DTYPE = torch.float64


def as_float_tensor(value: Any, name: str, *, dtype: torch.dtype | None = None,
                    device: torch.device | str | None = None) -> Tensor:
    """Convert ``value`` (tensor, array or number) to a floating tensor, float64 unless given.

    Raises ``TypeError`` for non-numeric input and ``ValueError`` for NaN or inf entries.
    """
    if isinstance(value, Tensor):
        if value.is_complex() or value.dtype == torch.bool:
            raise TypeError(f"{name} must be a real floating tensor, got dtype {value.dtype}")
        t = value
        if dtype is not None or not t.is_floating_point():
            t = t.to(dtype or DEFAULT_DTYPE)
        if device is not None:
            t = t.to(device)
    else:
        try:
            t = torch.as_tensor(value, dtype=dtype or DEFAULT_DTYPE, device=device)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a number, array or tensor of floats, "
                            f"got {type(value).__name__}") from err
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return t


def check_points(x: Any, dim: int, name: str = "x") -> Tensor:
    """Validate a batch of points: a finite floating tensor of shape ``(n, dim)``.

    Device and dtype are kept (a float64 tensor stays float64, float32 stays float32); integer
    input is rejected because silently rounding the caller's points would hide a mistake.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, {dim}), "
                        f"got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32 or float64), got {x.dtype}")
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"{name} must have shape (n, {dim}), got {tuple(x.shape)}")
    if not all_finite(x):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return x


_FINITE_CHECK_ROWS = 1 << 16


def all_finite(x: Tensor) -> bool:
    """Whether every entry of ``x`` is finite, checked in row chunks so that the temporary
    boolean mask stays bounded (``O(chunk)``, not ``O(n)``) for huge batches."""
    rows = max(1, _FINITE_CHECK_ROWS // max(1, x[0].numel() if x.ndim and x.shape[0] else 1))
    if x.ndim == 0 or x.shape[0] <= rows:
        return bool(torch.isfinite(x).all())
    return all(bool(torch.isfinite(x[i:i + rows]).all()) for i in range(0, x.shape[0], rows))


def check_sigma(sigma: Any, n: int, like: Tensor, name: str = "sigma",
                positive: bool = False) -> Tensor:
    """Validate a noise level and return it as an ``(n,)`` tensor in ``like``'s dtype/device.

    ``sigma`` may be a Python number, a 0-d tensor, or a tensor of shape ``(n,)`` or ``(n, 1)``
    (one level per sample). It must be finite and non-negative (strictly positive when
    ``positive``).
    """
    if isinstance(sigma, bool):
        raise TypeError(f"{name} must be a non-negative float or tensor, got bool")
    if isinstance(sigma, (int, float)):
        if not math.isfinite(sigma) or sigma < 0 or (positive and sigma == 0):
            bound = "> 0" if positive else ">= 0"
            raise ValueError(f"{name} must be finite and {bound}, got {sigma}")
        # Checked before the cast: a float32 cast would round 1e-50 to 0 and 1e40 to inf.
        _check_sigma_squared(torch.tensor([float(sigma)], dtype=torch.float64), like.dtype, name)
        # A broadcast view: one stored number, not an (n,) allocation.
        return torch.tensor(float(sigma), dtype=like.dtype, device=like.device).expand(n)
    if not isinstance(sigma, Tensor):
        try:
            sigma = torch.as_tensor(sigma, dtype=like.dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name} must be a float or a tensor of shape (n,), "
                            f"got {type(sigma).__name__}") from err
    if sigma.is_complex() or sigma.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got dtype {sigma.dtype}")
    s = per_row(sigma.to(dtype=like.dtype, device=like.device), n, name, "x")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    if bool((s < 0).any()) or (positive and bool((s == 0).any())):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound}, got minimum {float(s.min())}")
    _check_sigma_squared(s, like.dtype, name)
    return s


def sigma_range(dtype: torch.dtype) -> tuple[float, float]:
    """The nonzero noise levels whose square is a normal finite number of ``dtype``.

    Every target divides by or multiplies with ``sigma^2``; outside ``[sqrt(tiny), sqrt(max)]``
    (about ``[1.1e-19, 1.8e19]`` in float32, ``[1.5e-154, 1.3e154]`` in float64) that square
    underflows to a subnormal or zero, or overflows to inf.
    """
    info = torch.finfo(dtype)
    return math.sqrt(info.tiny), math.sqrt(info.max)


def _check_sigma_squared(s: Tensor, dtype: torch.dtype, name: str) -> None:
    """Reject nonzero ``s`` whose square is not a normal finite number in ``dtype``."""
    info = torch.finfo(dtype)
    sq = s.to(torch.float64).square()  # exact enough to classify; float64 is the widest dtype
    bad = (s != 0) & ((sq < info.tiny) | (sq > info.max))
    if bool(bad.any()):
        lo, hi = sigma_range(dtype)
        worst = float(s[bad][0])
        raise ValueError(f"{name} must be 0 or have a square that is a normal finite {dtype} "
                         f"number, i.e. {lo:.3g} <= {name} <= {hi:.3g}; got {worst:.3g}")


def input_eps(value: Any) -> float:
    """Machine epsilon of the precision ``value`` was given in, before any cast to float64.

    Floating tensors and numpy arrays report their dtype's eps; Python numbers, integers and
    anything else count as float64 (exactly representable or already double).
    """
    dtype = getattr(value, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return torch.finfo(dtype).eps if dtype.is_floating_point else torch.finfo(DEFAULT_DTYPE).eps
    if getattr(dtype, "kind", None) == "f":  # numpy floating array or scalar
        import numpy as np
        return float(np.finfo(dtype).eps)
    return torch.finfo(DEFAULT_DTYPE).eps


def per_row(value: Tensor, n: int, name: str, batch: str = "x") -> Tensor:
    """Broadcast a scalar, ``(n,)`` or ``(n, 1)`` tensor to one value per row, shape ``(n,)``."""
    if value.ndim == 2 and value.shape[1] == 1:
        value = value[:, 0]
    if value.ndim == 0:
        return value.expand(n)
    if value.shape != (n,):
        raise ValueError(f"{name} must be a scalar or have shape ({n},) to match {batch}, "
                         f"got {tuple(value.shape)}")
    return value


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    """Validate an integer count ``>= minimum`` (``bool`` is rejected)."""
    if isinstance(value, bool) or isinstance(value, Tensor) and value.is_floating_point():
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    try:
        value = operator.index(value)  # int, numpy integers, 0-d integer tensors
    except TypeError as err:
        raise TypeError(f"{name} must be an int, got {type(value).__name__}") from err
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_generator(generator: Any) -> torch.Generator | None:
    """Validate an optional ``torch.Generator``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, "
                        f"got {type(generator).__name__}")
    return generator


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a ``bool``; else raise ``TypeError`` naming ``name``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def check_choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of the strings ``choices``.

    Raises ``TypeError`` for a non-string and ``ValueError`` for an unknown string, both
    naming ``name`` and listing ``choices``.
    """
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {choices}, got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value

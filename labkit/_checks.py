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
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return x


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
        return torch.full((n,), float(sigma), dtype=like.dtype, device=like.device)
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
    return s


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

"""Validation of the batched tensors that processes, conversions and wrappers receive.

Unlike targets, processes accept batches of any trailing shape ``(n, ...)`` (vectors or images):
a per-sample time or noise level of shape ``(n,)`` is broadcast over the trailing dimensions.
"""

from __future__ import annotations

import math
from typing import Any

from torch import Tensor


def check_batch(x: Any, name: str) -> Tensor:
    """Validate a batch: a finite floating tensor of shape ``(n, ...)``; dtype/device are kept."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (n, ...), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor (float32 or float64), got {x.dtype}")
    if x.ndim < 1:
        raise ValueError(f"{name} must have shape (n, ...) with a batch dimension, got shape ()")
    if not bool(x.isfinite().all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return x


def check_same_shape(y: Any, like: Tensor, name: str, like_name: str) -> Tensor:
    """Validate a batch that must have exactly the shape of ``like`` (e.g. ``eps`` and ``x0``)."""
    y = check_batch(y, name)
    if y.shape != like.shape:
        raise ValueError(f"{name} must have the shape of {like_name}, {tuple(like.shape)}, "
                         f"got {tuple(y.shape)}")
    return y


def per_sample(coef: Tensor, x: Tensor) -> Tensor:
    """View an ``(n,)`` coefficient as ``(n, 1, ..., 1)`` so that it broadcasts against ``x``."""
    return coef.reshape(coef.shape + (1,) * (x.ndim - 1))


def check_real(value: Any, name: str, *, positive: bool = False) -> float:
    """Validate a finite real constructor parameter (``> 0`` when ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Tensor) and value.ndim == 0 and value.is_floating_point():
            value = float(value)
        else:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}, got {value}")
    return value

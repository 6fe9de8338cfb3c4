"""Validation of sample sets shared by the metrics: shape, finiteness, matching dimensions."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from .._checks import DEFAULT_DTYPE, check_positive_int
from .._intervals import IntervalResult, _as_rng, _check_level


def as_samples(x: Any, name: str, *, minimum: int = 1, dtype: torch.dtype | None = None) -> Tensor:
    """Return ``x`` as a finite floating tensor of shape ``(n, d)`` with ``n >= minimum``.

    Accepts tensors (device kept; float32 stays float32 unless ``dtype`` is given) and array-likes
    (converted to float64). A 1-D input is rejected rather than guessed as ``(n, 1)`` or
    ``(1, d)``: the message says to reshape.
    """
    if isinstance(x, Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise TypeError(f"{name} must be a real floating tensor, got dtype {x.dtype}")
        t = x if x.is_floating_point() and dtype is None else x.to(dtype or DEFAULT_DTYPE)
    else:
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float64), dtype=dtype or DEFAULT_DTYPE)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a tensor or array of shape (n, d), "
                            f"got {type(x).__name__}") from err
    if t.ndim != 2:
        hint = " (reshape 1-D data with x[:, None])" if t.ndim == 1 else ""
        raise ValueError(f"{name} must have shape (n, d), got {tuple(t.shape)}{hint}")
    if t.shape[0] < minimum:
        raise ValueError(f"{name} must hold at least {minimum} sample(s), got {t.shape[0]}")
    if t.shape[1] < 1:
        raise ValueError(f"{name} must have at least one coordinate, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got NaN or inf entries "
                         f"(drop or fix non-finite samples before measuring)")
    return t


def as_sample_pair(x: Any, y: Any, *, minimum: int = 1,
                   dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
    """Validate two sample sets of the same dimension; ``y`` follows ``x``'s dtype and device."""
    xs = as_samples(x, "x", minimum=minimum, dtype=dtype)
    ys = as_samples(y, "y", minimum=minimum, dtype=dtype)
    if xs.shape[1] != ys.shape[1]:
        raise ValueError(f"x and y must have the same dimension, got x of shape "
                         f"{tuple(xs.shape)} and y of shape {tuple(ys.shape)}")
    return xs, ys.to(dtype=xs.dtype, device=xs.device)


def bootstrap_two_sample(stat: Callable[[Tensor, Tensor], float], x: Tensor, y: Tensor, *,
                         n_boot: int, level: float = 0.95, generator: Any = None,
                         what: str = "statistic") -> IntervalResult:
    """Percentile bootstrap of ``stat(x, y)`` resampling both sets independently with replacement.

    ``stat`` is called ``n_boot + 1`` times (once on the data). Suitable for plug-in statistics
    (OT costs, Fréchet distances); *not* for U-statistics, whose diagonal exclusion breaks under
    resampling with replacement (ties reappear as off-diagonal pairs).

    Returns
    -------
    IntervalResult
        ``value = stat(x, y)``, the percentile interval, ``n = min(len(x), len(y))``.
    """
    level = _check_level(level)
    n_boot = check_positive_int(n_boot, "n_boot", minimum=10)
    rng = _as_rng(generator)
    value = float(stat(x, y))
    boot = np.empty(n_boot)
    for b in range(n_boot):  # loop over resamples, not samples: each call is vectorised
        ix = torch.as_tensor(rng.integers(0, x.shape[0], x.shape[0]), device=x.device)
        iy = torch.as_tensor(rng.integers(0, y.shape[0], y.shape[0]), device=y.device)
        boot[b] = float(stat(x[ix], y[iy]))
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    return IntervalResult(value, (float(lo), float(hi)), min(x.shape[0], y.shape[0]),
                          f"percentile bootstrap of the {what} ({n_boot} resamples of both sets)")

"""Interval arithmetic shared by ``labkit.metrics`` and ``labkit.study`` (no upward imports).

Each helper returns an :class:`IntervalResult` ``(value, interval, n, method)``: the fields of a
study ``Measurement`` and of a metrics ``Estimate``, with a ``method`` string that says how the
interval was obtained, as STUDIES.md requires. The public wrappers live in
:mod:`labkit.study.intervals`.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, NamedTuple

import numpy as np
from scipy.special import ndtri, stdtrit



class IntervalResult(NamedTuple):
    """A point estimate with its interval, the number of values behind it and the method."""

    value: float
    interval: tuple[float, float]
    n: int
    method: str

_BOOTSTRAP_CHUNK = 1 << 22  # resampled entries held in memory at once


def _check_level(level: Any) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)):
        raise TypeError(f"level must be a float in (0, 1), got {level!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    return float(level)


def _as_values(values: Any, name: str, minimum: int) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a 1-D array of floats, got {type(values).__name__}") \
            from err
    if arr.ndim != 1 or arr.size < minimum:
        raise ValueError(f"{name} must be a 1-D array of at least {minimum} floats, "
                         f"got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} must be finite, got NaN or inf entries")
    return arr


def _as_rng(generator: Any) -> np.random.Generator:
    if generator is None:
        return np.random.default_rng(0)
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, int) and not isinstance(generator, bool):
        return np.random.default_rng(generator)
    raise TypeError(f"generator must be a numpy.random.Generator, an int seed or None, "
                    f"got {type(generator).__name__}")


def normal_interval(mean: float, stderr: float, level: float = 0.95) -> tuple[float, float]:
    """Two-sided normal interval ``mean +- z_{(1+level)/2} * stderr``.

    Parameters
    ----------
    mean : float
        Point estimate.
    stderr : float
        Its standard error (``>= 0``).
    level : float, optional
        Coverage, 0.95 by default (``z = 1.95996...``).

    Returns
    -------
    tuple of float
        ``(lo, hi)``.
    """
    level = _check_level(level)
    mean, stderr = float(mean), float(stderr)
    if not math.isfinite(mean):
        raise ValueError(f"mean must be finite, got {mean}")
    if not math.isfinite(stderr) or stderr < 0:
        raise ValueError(f"stderr must be finite and >= 0, got {stderr}")
    half = float(ndtri(0.5 + level / 2)) * stderr
    return mean - half, mean + half


def mc_mean(values: Any, level: float = 0.95) -> IntervalResult:
    """Monte Carlo mean with a Student-t interval ``mean +- t_{n-1} * s / sqrt(n)``.

    Exact for normal values, the normal approximation for large ``n``.

    Parameters
    ----------
    values : array_like, shape (n,)
        Independent replicates, ``n >= 2``.
    level : float, optional
        Coverage, 0.95 by default.

    Returns
    -------
    IntervalResult
    """
    level = _check_level(level)
    x = _as_values(values, "values", minimum=2)
    n = x.size
    mean = float(x.mean())
    half = float(stdtrit(n - 1, 0.5 + level / 2)) * float(x.std(ddof=1)) / math.sqrt(n)
    return IntervalResult(mean, (mean - half, mean + half), n,
                       f"Student-t interval on the mean of {n} values")


def _accepts_axis(stat: Callable) -> bool:
    try:
        return "axis" in inspect.signature(stat).parameters
    except (TypeError, ValueError):
        return False


def bootstrap_interval(values: Any, stat: Callable = np.mean, level: float = 0.95,
                       n_boot: int = 2000, generator: Any = None) -> IntervalResult:
    """Percentile bootstrap interval of ``stat(values)``.

    Resamples ``values`` with replacement ``n_boot`` times and takes the ``(1-level)/2`` and
    ``(1+level)/2`` quantiles of the resampled statistic (Efron & Tibshirani, 1993, ch. 13).

    Parameters
    ----------
    values : array_like, shape (n,)
        Independent replicates (one per seed, or one per sample), ``n >= 2``.
    stat : callable, optional
        The statistic, ``np.mean`` by default. If it accepts ``axis`` (numpy reductions do) it is
        called once per chunk of resamples as ``stat(resamples, axis=-1)``; otherwise once per
        resample.
    level : float, optional
        Coverage, 0.95 by default.
    n_boot : int, optional
        Number of resamples.
    generator : numpy.random.Generator or int or None, optional
        Randomness; ``None`` means seed 0, so the same values always give the same interval.

    Returns
    -------
    IntervalResult
        ``value = stat(values)``, the percentile interval, ``n = len(values)``.
    """
    level = _check_level(level)
    x = _as_values(values, "values", minimum=2)
    if not callable(stat):
        raise TypeError(f"stat must be a callable such as np.mean, got {type(stat).__name__}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 10:
        raise ValueError(f"n_boot must be an int >= 10, got {n_boot!r}")
    rng = _as_rng(generator)
    n = x.size
    vectorised = _accepts_axis(stat)
    chunk = max(1, _BOOTSTRAP_CHUNK // n)
    boot = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        resamples = x[rng.integers(0, n, size=(stop - start, n))]  # (chunk, n)
        boot[start:stop] = (stat(resamples, axis=-1) if vectorised
                            else [stat(r) for r in resamples])
    lo, hi = np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2])
    name = getattr(stat, "__name__", "statistic")
    return IntervalResult(float(stat(x)), (float(lo), float(hi)), n,
                       f"percentile bootstrap of the {name} over {n} values "
                       f"({n_boot} resamples)")


def regression_slope_interval(x: Any, y: Any, level: float = 0.95) -> IntervalResult:
    """Ordinary least-squares slope of ``y`` on ``x`` with a Student-t interval.

    ``slope +- t_{n-2} * se``, ``se = sqrt(SSR / (n - 2) / sum((x - mean(x))^2))``: exact when the
    residuals are independent normal. For a convergence rate, pass logarithms (``log h``,
    ``log error``) and read the slope as the order.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Abscissae (not all equal) and responses, ``n >= 3``.
    level : float, optional
        Coverage, 0.95 by default.

    Returns
    -------
    IntervalResult
        ``value`` the slope, ``n`` the number of points.
    """
    level = _check_level(level)
    xs = _as_values(x, "x", minimum=3)
    ys = _as_values(y, "y", minimum=3)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    dx = xs - xs.mean()
    sxx = float(dx @ dx)
    if sxx == 0.0:
        raise ValueError("x must not be constant: the slope is undefined")
    n = xs.size
    slope = float(dx @ (ys - ys.mean())) / sxx
    residuals = ys - ys.mean() - slope * dx
    se = math.sqrt(float(residuals @ residuals) / (n - 2) / sxx)
    half = float(stdtrit(n - 2, 0.5 + level / 2)) * se
    return IntervalResult(slope, (slope - half, slope + half), n,
                       f"OLS slope over {n} points, Student-t interval from the regression "
                       f"standard error ({n - 2} dof)")


def wilson_interval(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``p`` observed over ``n`` trials (Wilson 1927).

    ``(centre -+ half)`` with ``centre = (p + z^2 / 2n) / (1 + z^2 / n)`` and ``half = z / (1 +
    z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)``; never degenerate at ``p = 0`` or ``1``, where
    the closed end is set exactly (no rounding residue). Coverage is close to, not exactly,
    ``level`` (it oscillates with ``n p``; Brown, Cai & DasGupta 2001, Stat. Sci. 16).
    """
    level = _check_level(level)
    p = min(max(float(p), 0.0), 1.0)
    z = float(ndtri(0.5 + level / 2))
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo = 0.0 if p == 0.0 else max(0.0, centre - half)
    hi = 1.0 if p == 1.0 else min(1.0, centre + half)
    return lo, hi

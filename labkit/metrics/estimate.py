"""The value every metric returns: a number with its 95% interval, sample size and method."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .._intervals import IntervalResult


def _real(value: Any, name: str) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a float, got {value!r}") from err


@dataclass(frozen=True)
class Estimate:
    """A metric value with its uncertainty.

    Parameters
    ----------
    value : float
        The point estimate (finite; ``inf`` only where the metric is genuinely infinite, such as
        a KL divergence between measures with different supports).
    interval : pair of float
        A 95% interval ``(lo, hi)``; ``(value, value)`` for an exact closed form. A percentile
        bootstrap interval of a biased plug-in statistic need not contain ``value``: each
        metric's docstring states its bias.
    n : int
        Number of samples behind the estimate (for two sample sets, the smaller size); ``0`` for
        a closed form evaluated from parameters.
    method : str
        How the value and interval were obtained (``"exact OT by network simplex, percentile
        bootstrap over 200 resamples"``, ``"closed form"``, ...).
    stderr : float or None, optional
        Standard error of ``value`` where one is available (Monte Carlo and U-statistics).

    Examples
    --------
    >>> Estimate.exact(0.5, "closed-form Bures-Wasserstein distance")
    Estimate(value=0.5, interval=(0.5, 0.5), n=0, method='closed-form Bures-Wasserstein distance', stderr=0.0)
    """

    value: float
    interval: tuple[float, float]
    n: int
    method: str
    stderr: float | None = None

    def __post_init__(self) -> None:
        value = _real(self.value, "Estimate.value")
        if math.isnan(value):
            raise ValueError("Estimate.value must not be NaN")
        object.__setattr__(self, "value", value)
        if isinstance(self.interval, (str, bytes)) or len(self.interval) != 2:
            raise TypeError(f"Estimate.interval must be a pair (lo, hi), got {self.interval!r}")
        lo, hi = (_real(v, "Estimate.interval") for v in self.interval)
        if math.isnan(lo) or math.isnan(hi) or lo > hi:
            raise ValueError(f"Estimate.interval must satisfy lo <= hi without NaN, "
                             f"got ({lo}, {hi})")
        object.__setattr__(self, "interval", (lo, hi))
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise TypeError(f"Estimate.n must be an int >= 0, got {self.n!r}")
        if not isinstance(self.method, str) or not self.method.strip():
            raise TypeError(f"Estimate.method must be a non-empty str, got {self.method!r}")
        if self.stderr is not None:
            stderr = _real(self.stderr, "Estimate.stderr")
            if not stderr >= 0.0:
                raise ValueError(f"Estimate.stderr must be >= 0, got {stderr}")
            object.__setattr__(self, "stderr", stderr)

    @classmethod
    def exact(cls, value: float, method: str) -> "Estimate":
        """A closed-form value: zero-width interval, ``n = 0``, ``stderr = 0``."""
        v = _real(value, "value")
        return cls(v, (v, v), 0, method, 0.0)

    @classmethod
    def from_interval(cls, result: IntervalResult, stderr: float | None = None) -> "Estimate":
        """Wrap the ``(value, interval, n, method)`` of :mod:`labkit._intervals`."""
        return cls(result.value, result.interval, result.n, result.method, stderr)

    @property
    def half_width(self) -> float:
        """Half the width of the interval."""
        return 0.5 * (self.interval[1] - self.interval[0])

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval."""
        return self.interval[0] <= float(value) <= self.interval[1]

    def __float__(self) -> float:
        """The point value."""
        return self.value

    def __str__(self) -> str:
        """``value [lo, hi] (n=...)``, or ``value (exact)`` for a closed form (``n == 0``)."""
        lo, hi = self.interval
        if self.n == 0 and lo == hi:
            return f"{self.value:.6g} (exact)"
        return f"{self.value:.6g} [{lo:.6g}, {hi:.6g}] (n={self.n})"

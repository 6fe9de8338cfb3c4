"""95% intervals for measured quantities: bootstrap, normal, Student-t and regression slopes.

Each helper returns a :class:`~labkit.study.Measurement` with a ``method`` string that says how
the interval was obtained, as STUDIES.md requires. The arithmetic lives in
:mod:`labkit._intervals`, shared with ``labkit.metrics`` (which sits below the study layer).
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from .. import _intervals
from .records import Measurement

normal_interval = _intervals.normal_interval


def _as_measurement(func: Callable) -> Callable:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Measurement:
        return Measurement(*func(*args, **kwargs))
    wrapper.__doc__ = (func.__doc__ or "").replace("IntervalResult", "Measurement")
    return wrapper


mc_mean = _as_measurement(_intervals.mc_mean)
bootstrap_interval = _as_measurement(_intervals.bootstrap_interval)
regression_slope_interval = _as_measurement(_intervals.regression_slope_interval)

__all__ = ["normal_interval", "mc_mean", "bootstrap_interval", "regression_slope_interval"]

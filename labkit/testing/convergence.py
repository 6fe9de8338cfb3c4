"""Observed order of convergence with a confidence interval.

A method of order ``q`` has global error ``e(h) ~ C h^q`` as the step ``h -> 0``, so
``log e = q log h + log C`` is a line; its least-squares slope estimates ``q`` and the Student-t
interval of that slope says how precisely the data pin it down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from torch import Tensor

from ..study.intervals import regression_slope_interval
from .assertions import _positive_vector, fit_order


@dataclass(frozen=True)
class ConvergenceOrder:
    """Observed order of convergence: the slope of ``log error`` against ``log h``.

    Attributes
    ----------
    order : float
        Least-squares slope ``q_hat``.
    interval : tuple of float
        Two-sided Student-t interval ``q_hat +- t_{m-2, (1+level)/2} se`` for the slope.
    intercept : float
        Fitted ``log C``.
    local_orders : tuple of float
        Slopes between consecutive step sizes, ``log(e_{j+1}/e_j) / log(h_{j+1}/h_j)``: where
        they settle shows the asymptotic regime, where they drift shows round-off or
        pre-asymptotic terms.
    step_sizes, errors : tuple of float
        The data, sorted by increasing step size.
    level : float
        Coverage of ``interval``.
    """

    order: float
    interval: tuple[float, float]
    intercept: float
    local_orders: tuple[float, ...]
    step_sizes: tuple[float, ...]
    errors: tuple[float, ...]
    level: float

    def covers(self, q: float) -> bool:
        """Whether ``q`` lies in :attr:`interval` (closed)."""
        return self.interval[0] <= q <= self.interval[1]


def convergence_order(errors: Sequence[float] | Tensor, step_sizes: Sequence[float] | Tensor,
                      level: float = 0.95) -> ConvergenceOrder:
    """Order of convergence from errors at several step sizes, with a confidence interval.

    Fits ``log e_j = q log h_j + c + r_j`` by ordinary least squares. With
    ``x_j = log h_j`` and ``S_xx = sum (x_j - mean x)^2``, the slope has standard error
    ``se = sqrt(sum r_j^2 / (m - 2) / S_xx)`` and the interval is
    ``q_hat +- t_{m-2, (1+level)/2} se``, exact when the residuals are independent
    ``N(0, s^2)``. Residuals of a real solver are the higher-order terms ``O(h^{q+1})``,
    smooth in ``h`` rather than random, so read the interval as "how well a line fits" and
    check :attr:`ConvergenceOrder.local_orders` too. An exact power law gives a degenerate
    interval ``[q, q]``.

    Parameters
    ----------
    errors : sequence of float or 1-D Tensor, length ``m >= 3``
        Positive, finite global errors.
    step_sizes : sequence of float or 1-D Tensor, length ``m``
        Positive, finite, distinct step sizes ``h`` (``1 / steps`` serves: only ratios
        matter). Not the numbers of steps, which would flip the sign of the slope.
    level : float
        Coverage in ``(0, 1)``, 0.95 by default.

    Returns
    -------
    ConvergenceOrder

    Raises
    ------
    TypeError
        If the inputs are not numbers.
    ValueError
        For fewer than 3 points, mismatched lengths, non-positive or non-finite values,
        repeated step sizes, or ``level`` outside ``(0, 1)``.

    References
    ----------
    Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", Springer 1993,
    Sec. II.3 (order of a method). Kidger, "On Neural Differential Equations", 2021,
    arXiv:2202.02435 (diffrax's order tests fit this slope). Draper, Smith, "Applied
    Regression Analysis", 3rd ed. 1998, Sec. 1.4 (the t interval of an OLS slope).

    Examples
    --------
    >>> fit = convergence_order([1e-2, 2.5e-3, 6.25e-4], [0.1, 0.05, 0.025])
    >>> round(fit.order, 12), fit.covers(2.0)
    (2.0, True)
    """
    e = _positive_vector(errors, "errors")
    h = _positive_vector(step_sizes, "step_sizes")
    if e.numel() != h.numel():
        raise ValueError(f"errors and step_sizes must have the same length, got {e.numel()} "
                         f"and {h.numel()}")
    if e.numel() < 3:
        raise ValueError(f"errors and step_sizes need at least 3 points (a line through 2 has "
                         f"no residual to estimate an interval from), got {e.numel()}")
    fit = fit_order(e, h)  # sorts, rejects repeated steps, gives the local slopes
    log_h, log_e = np.log(fit.step_sizes), np.log(fit.errors)
    slope = regression_slope_interval(log_h, log_e, level)
    lo, hi = slope.interval
    return ConvergenceOrder(order=slope.value, interval=(lo, hi),
                            # The OLS line passes through the centroid.
                            intercept=float(log_e.mean() - slope.value * log_h.mean()),
                            local_orders=fit.local_slopes, step_sizes=fit.step_sizes,
                            errors=fit.errors, level=float(level))

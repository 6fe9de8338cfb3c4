"""Bootstrap intervals over one or more sample sets, shared by the plug-in metrics.

Plug-in statistics such as an empirical OT cost or a Fréchet distance of fitted Gaussians carry
a finite-sample bias, and resampling with replacement adds it a second time (duplicates make a
resample look less spread than the data). The percentile interval then sits beside the
population value; the *basic* (reflected) interval ``(2 v - q_hi, 2 v - q_lo)`` subtracts the
bias to first order (Davison & Hinkley, "Bootstrap Methods and their Application", 1997, Sec.
5.2), which is why it is the default here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from .._checks import check_choice, check_positive_int
from .._intervals import IntervalResult, _as_rng, _check_level

KINDS = ("basic", "percentile", "bias_shifted")
_KIND_TEXT = {"basic": "basic (reflected) bootstrap", "percentile": "percentile bootstrap",
              "bias_shifted": "percentile bootstrap shifted by its own bias"}


def as_rng(generator: Any) -> np.random.Generator:
    """A numpy ``Generator`` from ``None`` (seed 0), an int seed, a numpy ``Generator`` or a
    ``torch.Generator`` (one 63-bit draw from it seeds the numpy generator, so a seeded torch
    generator gives reproducible resamples)."""
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator,
                                 device=generator.device))
        return np.random.default_rng(seed)
    try:
        return _as_rng(generator)
    except TypeError:
        raise TypeError(f"generator must be a torch.Generator, a numpy.random.Generator, an int "
                        f"seed or None, got {type(generator).__name__}") from None


def check_n_boot(n_boot: Any, minimum: int = 10) -> int:
    """Validate a bootstrap count: ``0`` (the value alone, no interval) or ``>= minimum``.

    ``bool`` and non-integers raise ``TypeError``; ``1 .. minimum - 1`` raises ``ValueError``
    (too few resamples for the quantiles of a 95% interval).
    """
    n_boot = check_positive_int(n_boot, "n_boot", minimum=0)
    if 0 < n_boot < minimum:
        raise ValueError(f"n_boot must be >= {minimum} resamples (or 0 for the value alone, "
                         f"with no interval), got {n_boot}")
    return n_boot


def value_only(value: float, n: int, interval: tuple[float, float], what: str) -> IntervalResult:
    """The point value with a trivial ``interval`` (the statistic's range), as for ``n_boot=0``."""
    return IntervalResult(float(value), (float(interval[0]), float(interval[1])), n,
                          f"{what}; no interval (n_boot=0)")


def bootstrap_sets(stat: Callable[..., float], samples: Sequence[Tensor], *, n_boot: int,
                   level: float = 0.95, generator: Any = None, kind: str = "basic",
                   lower: float | None = None, what: str = "statistic") -> IntervalResult:
    """Bootstrap interval of ``stat(*samples)``, each set resampled independently with
    replacement ``n_boot`` times (``stat`` is called ``n_boot + 1`` times, each call vectorised).

    Parameters
    ----------
    stat : callable
        ``stat(*samples) -> float``.
    samples : sequence of Tensor
        One or more ``(n_i, ...)`` sets.
    n_boot : int
        Resamples, ``>= 10``; ``0`` returns the value alone (``stat`` called once) with the
        trivial interval ``(lower, inf)`` (``(-inf, inf)`` without ``lower``).
    level : float, optional
        Coverage, 0.95 by default.
    generator : torch.Generator, numpy.random.Generator, int or None, optional
        Randomness (see :func:`as_rng`); ``None`` means seed 0.
    kind : {"basic", "percentile", "bias_shifted"}, optional
        ``"basic"``: ``(2 v - q_hi, 2 v - q_lo)`` (removes the plug-in bias to first order);
        ``"percentile"``: ``(q_lo, q_hi)``; ``"bias_shifted"``: the percentile interval minus
        the bootstrap bias ``mean(boot) - v`` (for statistics that are unbiased on distinct
        points but biased on resamples with duplicates).
    lower : float or None, optional
        Clip both ends from below (``0`` for a non-negative statistic).
    what : str, optional
        Name of the statistic for the method string.

    Returns
    -------
    IntervalResult
        ``value = stat(*samples)``, the interval, ``n = min(len(s))``, the method.
    """
    level = _check_level(level)
    n_boot = check_n_boot(n_boot)
    kind = check_choice(kind, "kind", KINDS)
    rng = as_rng(generator)
    value = float(stat(*samples))
    if n_boot == 0:
        return value_only(value, min(s.shape[0] for s in samples),
                          (-math.inf if lower is None else lower, math.inf), what)
    boot = np.empty(n_boot)
    for b in range(n_boot):  # a loop over resamples, not samples
        boot[b] = float(stat(*(s[torch.as_tensor(rng.integers(0, s.shape[0], s.shape[0]),
                                                  device=s.device)] for s in samples)))
    if not np.isfinite(boot).all():
        raise ValueError(f"the {what} was not finite on a bootstrap resample")
    q_lo, q_hi = (float(q) for q in np.quantile(boot, [0.5 - level / 2, 0.5 + level / 2]))
    if kind == "basic":
        lo, hi = 2 * value - q_hi, 2 * value - q_lo
    elif kind == "bias_shifted":
        shift = float(boot.mean()) - value
        lo, hi = q_lo - shift, q_hi - shift
    else:
        lo, hi = q_lo, q_hi
    if lower is not None:
        lo, hi = max(lo, lower), max(hi, lower)
    sets = "the set" if len(samples) == 1 else f"each of the {len(samples)} sets"
    return IntervalResult(value, (lo, hi), min(s.shape[0] for s in samples),
                          f"{_KIND_TEXT[kind]} interval of the {what} ({n_boot} resamples of "
                          f"{sets})")

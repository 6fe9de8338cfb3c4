"""Claims, measurements and the verdict rule of STUDIES.md.

A :class:`Claim` states a region ``[lo, hi]`` for a measured number, a :class:`Measurement` gives
that number with a 95% interval, and :func:`verdict` compares the two mechanically (checks and
their negative controls are in :mod:`labkit.study.checks`).

Regions and intervals are closed; an infinite end stands for a one-sided claim ("negative" is
``(-inf, 0]``). In JSON, infinite ends are the strings ``"inf"`` and ``"-inf"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

from ._json import decode_float, encode_float

Verdict = Literal["supported", "refuted", "inconclusive"]
VERDICTS: tuple[str, ...] = ("supported", "refuted", "inconclusive")


def as_interval(value: Any, name: str) -> tuple[float, float]:
    """Validate a closed interval ``(lo, hi)``: two real numbers, no NaN, ``lo <= hi``.

    Infinite ends are allowed (one-sided regions and intervals).
    """
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise TypeError(f"{name} must be a pair (lo, hi) of floats, got {value!r}")
    ends = []
    for end in value:
        if isinstance(end, bool):
            raise TypeError(f"{name} must be a pair (lo, hi) of floats, got {value!r}")
        try:
            ends.append(float(end))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be a pair (lo, hi) of floats, got {value!r}") from err
    lo, hi = ends
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} must not contain NaN, got ({lo}, {hi})")
    if lo > hi:
        raise ValueError(f"{name} must satisfy lo <= hi, got ({lo}, {hi})")
    return lo, hi


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")
    return value


def _encode_pair(pair: tuple[float, float]) -> list:
    return [encode_float(pair[0]), encode_float(pair[1])]


def _decode_pair(value: Any, name: str) -> tuple[float, float]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError(f"{name} must be a JSON list [lo, hi], got {value!r}")
    return decode_float(value[0], f"{name}[0]"), decode_float(value[1], f"{name}[1]")


def _field(data: Mapping[str, Any], key: str, what: str) -> Any:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, got {type(data).__name__}")
    if key not in data:
        raise ValueError(f"{what} is missing the key {key!r}")
    return data[key]


def verdict(region: Any, interval: Any) -> Verdict:
    """Judge a measured interval against a claimed region (the rule of STUDIES.md).

    Both are closed intervals ``[lo, hi]`` (infinite ends allowed):

    - ``"supported"`` if ``region_lo <= m_lo`` and ``m_hi <= region_hi`` (inside, ends included);
    - ``"refuted"`` if ``m_hi < region_lo`` or ``m_lo > region_hi`` (disjoint; an interval that
      only touches the region shares a point with it and is not refuted);
    - ``"inconclusive"`` otherwise.

    Parameters
    ----------
    region : pair of float
        The claimed region ``(lo, hi)``.
    interval : pair of float
        The 95% interval ``(m_lo, m_hi)`` of the measured quantity.

    Returns
    -------
    str
        One of ``"supported"``, ``"refuted"``, ``"inconclusive"``.

    Examples
    --------
    >>> verdict((1.8, 2.2), (1.97, 2.05))
    'supported'
    >>> verdict((-float("inf"), 0.0), (0.1, 0.3))
    'refuted'
    """
    lo, hi = as_interval(region, "region")
    m_lo, m_hi = as_interval(interval, "interval")
    if lo <= m_lo and m_hi <= hi:
        return "supported"
    if m_hi < lo or m_lo > hi:
        return "refuted"
    return "inconclusive"


@dataclass(frozen=True)
class Claim:
    """A published claim reduced to a number and the region the paper says it lies in.

    Parameters
    ----------
    id : str
        Short identifier, unique within a study (``"heun_order"``).
    source : str
        Where the claim comes from (authors, year, arXiv id, equation or section).
    statement : str
        The claim in one sentence, as the paper makes it.
    quantity : str
        What number is measured, with its unit (``"log-log slope of W2 error vs step"``).
    region : pair of float
        Claimed closed region ``(lo, hi)``; use ``-inf``/``inf`` for one-sided claims.
    """

    id: str
    source: str
    statement: str
    quantity: str
    region: tuple[float, float]

    def __post_init__(self) -> None:
        for name in ("id", "source", "statement", "quantity"):
            _text(getattr(self, name), f"Claim.{name}")
        object.__setattr__(self, "region", as_interval(self.region, "Claim.region"))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; infinite region ends become ``"inf"``/``"-inf"``."""
        return {"id": self.id, "source": self.source, "statement": self.statement,
                "quantity": self.quantity, "region": _encode_pair(self.region)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Claim":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed dict."""
        values = {k: _field(data, k, "claim") for k in ("id", "source", "statement", "quantity")}
        return cls(**values, region=_decode_pair(_field(data, "region", "claim"), "claim.region"))


@dataclass(frozen=True)
class Measurement:
    """A measured number with its 95% interval.

    Parameters
    ----------
    value : float
        Point estimate (not NaN).
    interval : pair of float
        The 95% interval ``(lo, hi)``.
    n : int
        Number of replicates or samples behind the interval (seeds, Monte Carlo samples, points
        of a regression).
    method : str
        How the interval was obtained (``"percentile bootstrap over 12 seeds"``,
        ``"OLS slope, t interval from the regression standard error"``, ...).
    """

    value: float
    interval: tuple[float, float]
    n: int
    method: str

    def __post_init__(self) -> None:
        if isinstance(self.value, bool):
            raise TypeError(f"Measurement.value must be a float, got {self.value!r}")
        try:
            value = float(self.value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"Measurement.value must be a float, got {self.value!r}") from err
        if math.isnan(value):
            raise ValueError("Measurement.value must not be NaN")
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "interval", as_interval(self.interval, "Measurement.interval"))
        if isinstance(self.n, bool) or not isinstance(self.n, int):
            raise TypeError(f"Measurement.n must be an int >= 1, got {self.n!r}")
        if self.n < 1:
            raise ValueError(f"Measurement.n must be an int >= 1, got {self.n}")
        _text(self.method, "Measurement.method")

    @classmethod
    def from_estimate(cls, estimate: Any, level: float = 0.95,
                      method: str = "normal approximation from the standard error",
                      ) -> "Measurement":
        """Build a measurement from a ``labkit.metrics.Estimate`` or any object with ``value``,
        ``stderr`` and ``n`` attributes.

        An object with ``interval`` and ``method`` attributes (an ``Estimate``) keeps its own
        95% interval and method (``level`` must then be 0.95). Otherwise the interval is
        ``value +- z * stderr`` (see :func:`labkit.study.normal_interval`).
        """
        from .intervals import normal_interval
        if hasattr(estimate, "interval") and hasattr(estimate, "method"):
            if level != 0.95:
                raise ValueError(f"level must be 0.95 for an estimate that carries its own 95% "
                                 f"interval, got {level}")
            return cls(float(estimate.value), estimate.interval, int(estimate.n),
                       estimate.method)
        missing = [a for a in ("value", "stderr", "n") if not hasattr(estimate, a)]
        if missing:
            raise TypeError(f"estimate must have attributes value, stderr and n, "
                            f"{type(estimate).__name__} lacks {', '.join(missing)}")
        value = float(estimate.value)
        return cls(value, normal_interval(value, float(estimate.stderr), level),
                   int(estimate.n), method)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; infinite values become ``"inf"``/``"-inf"``."""
        return {"value": encode_float(self.value), "interval": _encode_pair(self.interval),
                "n": self.n, "method": self.method}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurement":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a malformed dict."""
        return cls(value=decode_float(_field(data, "value", "measurement"), "measurement.value"),
                   interval=_decode_pair(_field(data, "interval", "measurement"),
                                         "measurement.interval"),
                   n=_field(data, "n", "measurement"),
                   method=_field(data, "method", "measurement"))

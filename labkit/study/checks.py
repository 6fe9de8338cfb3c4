"""Checks: a claim, its measurement, the computed verdict and the negative control.

Every :class:`Check` carries a negative :class:`Control`: the same measurement on an input built
to violate the claim, judged against the *same* region. A control that is not ``refuted`` means
the measurement cannot tell the claim from its violation; the check says so (``control_ok``,
``note``) and the record keeps both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from .records import (VERDICTS, Claim, Measurement, Verdict, _field, _text,
                      verdict)

CONTROL_NOTE = ("the negative control was not refuted, so this measurement cannot tell the claim "
                "from its violation; the verdict carries no evidence")


def _check_verdict(value: Any, name: str) -> str:
    if value not in VERDICTS:
        raise ValueError(f"{name} must be one of {VERDICTS}, got {value!r}")
    return value


@dataclass(frozen=True)
class Control:
    """A negative control: the claim's measurement on an input built to violate the claim.

    Build it with :meth:`Control.against` (or :meth:`Check.evaluate`), which computes the verdict
    against the claim's region; :class:`Check` rejects a control whose verdict disagrees with it.

    Parameters
    ----------
    statement : str
        What the control input is (``"Euler posing as second order"``).
    measured : Measurement
        The same quantity measured on the control input.
    verdict : str
        ``verdict(claim.region, measured.interval)``; should be ``"refuted"``.
    """

    statement: str
    measured: Measurement
    verdict: Verdict

    def __post_init__(self) -> None:
        _text(self.statement, "Control.statement")
        if not isinstance(self.measured, Measurement):
            raise TypeError(f"Control.measured must be a Measurement, "
                            f"got {type(self.measured).__name__}")
        _check_verdict(self.verdict, "Control.verdict")

    @classmethod
    def against(cls, claim: Claim, statement: str, measured: Measurement) -> "Control":
        """The control of ``claim``, judged against the claim's own region."""
        if not isinstance(claim, Claim):
            raise TypeError(f"claim must be a Claim, got {type(claim).__name__}")
        if not isinstance(measured, Measurement):
            raise TypeError(f"measured must be a Measurement, got {type(measured).__name__}")
        return cls(statement, measured, verdict(claim.region, measured.interval))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"statement": self.statement, "measured": self.measured.to_dict(),
                "verdict": self.verdict}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Control":
        """Inverse of :meth:`to_dict`."""
        return cls(statement=_field(data, "statement", "control"),
                   measured=Measurement.from_dict(_field(data, "measured", "control")),
                   verdict=_check_verdict(_field(data, "verdict", "control"), "control.verdict"))


@dataclass(frozen=True)
class Check:
    """One claim, its measurement, the computed verdict and the negative control.

    The verdict is computed from ``claim.region`` and ``measured.interval``, never passed in.

    Parameters
    ----------
    claim : Claim
    measured : Measurement
    control : Control
        Must have been judged against ``claim.region`` (use :meth:`Control.against`).

    Attributes
    ----------
    verdict : str
        ``verdict(claim.region, measured.interval)``.
    control_ok : bool
        Whether the control came out ``"refuted"``, i.e. the measurement can tell.
    note : str or None
        Why the verdict carries no evidence when ``control_ok`` is false, else ``None``.
    """

    claim: Claim
    measured: Measurement
    verdict: Verdict = field(init=False)
    control: Control

    def __post_init__(self) -> None:
        for name, kind in (("claim", Claim), ("measured", Measurement), ("control", Control)):
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"Check.{name} must be a {kind.__name__}, "
                                f"got {type(getattr(self, name)).__name__}")
        expected = verdict(self.claim.region, self.control.measured.interval)
        if self.control.verdict != expected:
            raise ValueError(f"Check.control.verdict is {self.control.verdict!r} but the control's "
                             f"interval against the claimed region gives {expected!r}; build the "
                             f"control with Control.against(claim, ...)")
        object.__setattr__(self, "verdict", verdict(self.claim.region, self.measured.interval))

    @classmethod
    def evaluate(cls, claim: Claim, measured: Measurement, control_statement: str,
                 control_measured: Measurement) -> "Check":
        """Build a check, judging both the measurement and its control against ``claim.region``."""
        return cls(claim, measured, Control.against(claim, control_statement, control_measured))

    @property
    def control_ok(self) -> bool:
        """Whether the negative control came out ``"refuted"``."""
        return self.control.verdict == "refuted"

    @property
    def note(self) -> str | None:
        """Explanation attached to the record when the control is not refuted."""
        return None if self.control_ok else CONTROL_NOTE

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with ``control_ok`` and ``note`` (``null`` when the control is ok)."""
        return {"claim": self.claim.to_dict(), "measured": self.measured.to_dict(),
                "verdict": self.verdict, "control": self.control.to_dict(),
                "control_ok": self.control_ok, "note": self.note}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Check":
        """Inverse of :meth:`to_dict`; the stored verdict must match the recomputed one."""
        check = cls(claim=Claim.from_dict(_field(data, "claim", "check")),
                    measured=Measurement.from_dict(_field(data, "measured", "check")),
                    control=Control.from_dict(_field(data, "control", "check")))
        stored = _field(data, "verdict", "check")
        if stored != check.verdict:
            raise ValueError(f"check {check.claim.id!r} stores verdict {stored!r} but its interval "
                             f"and region give {check.verdict!r}")
        return check

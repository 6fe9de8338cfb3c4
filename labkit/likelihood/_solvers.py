"""Solver-name validation shared by :mod:`.sampler` and :mod:`.sde_chain`."""

from __future__ import annotations

from typing import Any, Mapping

from ..solvers import SOLVERS
from ..solvers.base import Solver


def solver_instance(solver: object, options: dict[str, Any], rejected: Mapping[str, str],
                    user: str, hint: str = "") -> Solver:
    """``SOLVERS[solver](**options)`` after checking the name.

    Raises ``TypeError`` when ``solver`` is not a string, ``ValueError`` when it is not a
    registered name or is in ``rejected`` (``name -> reason``; the message reads ``solver
    {name!r} is not supported by {user}: {reason}{hint}``).
    """
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a solver name from labkit.solvers.SOLVERS, "
                        f"got {type(solver).__name__}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {sorted(SOLVERS)}, got {solver!r}")
    if solver in rejected:
        raise ValueError(f"solver {solver!r} is not supported by {user}: {rejected[solver]}"
                         f"{hint}")
    return SOLVERS[solver](**options)

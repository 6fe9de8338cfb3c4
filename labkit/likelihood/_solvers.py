"""Solver-name validation shared by :mod:`.sampler` and :mod:`.sde_chain`."""

from __future__ import annotations

from typing import Any, Mapping

from ..solvers.base import Solver
from ..solvers.sample import _make_solver


def solver_instance(solver: object, options: dict[str, Any], rejected: Mapping[str, str],
                    user: str, hint: str = "") -> Solver:
    """``SOLVERS[solver](**options)`` after checking the name.

    Raises ``TypeError`` when ``solver`` is not a string (the likelihoods look solvers up by
    name), ``ValueError`` when it is in ``rejected`` (``name -> reason``; the message reads
    ``solver {name!r} is not supported by {user}: {reason}{hint}``); unknown names and bad
    options are reported by :func:`labkit.solvers.sample._make_solver`, as in ``labkit.sample``.
    """
    if not isinstance(solver, str):
        raise TypeError(f"solver must be a solver name from labkit.solvers.SOLVERS, "
                        f"got {type(solver).__name__}")
    if solver in rejected:
        raise ValueError(f"solver {solver!r} is not supported by {user}: {rejected[solver]}"
                         f"{hint}")
    return _make_solver(solver, options)

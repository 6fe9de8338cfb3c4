"""The solver registry: name -> class."""

from __future__ import annotations

from .base import Solver
from .euler import Euler
from .heun import Heun

SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (Euler, Heun)}

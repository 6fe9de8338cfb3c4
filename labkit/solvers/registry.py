"""The solver registry: name -> class."""

from __future__ import annotations

from .base import Solver
from .dpm2 import DPM2
from .dpmpp_2m import DPMpp2M
from .euler import Euler
from .heun import Heun
from .lms import LMS

SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (Euler, Heun, DPM2, LMS, DPMpp2M)}

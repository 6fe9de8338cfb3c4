"""The solver registry: name -> class."""

from __future__ import annotations

from .base import Solver
from .ddim import DDIM
from .dpm2 import DPM2
from .dpm_solver import DPMSolver
from .dpmpp_2m import DPMpp2M
from .dpmpp_3m import DPMpp3M, DPMpp3MCorrected
from .dpmpp_singlestep import DPMpp2S
from .euler import Euler
from .euler_ancestral import EulerAncestral
from .euler_maruyama import EulerMaruyama
from .heun import Heun
from .lms import LMS

SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in (Euler, Heun, DPM2, LMS, DPMpp2M,
                                                              EulerAncestral, EulerMaruyama, DDIM,
                                                              DPMSolver, DPMpp2S, DPMpp3M,
                                                              DPMpp3MCorrected)}

"""The solver registry: name -> class."""

from __future__ import annotations

from .adaptive import DPMAdaptive
from .base import Solver
from .ddim import DDIM
from .ddpm import DDPM
from .deis import DEIS, DEISCorrected
from .dpm2 import DPM2
from .dpm_solver import DPMSolver
from .dpmpp_2m import DPMpp2M
from .dpmpp_3m import DPMpp3M, DPMpp3MCorrected
from .dpmpp_sde import DPMpp2MSDE, DPMpp3MSDE, DPMppSDE
from .dpmpp_singlestep import DPMpp2S, DPMpp2SAncestral
from .euler import Euler
from .euler_ancestral import EulerAncestral
from .euler_maruyama import EulerMaruyama
from .heun import Heun
from .ipndm import IPNDM, IPNDMV
from .langevin_pc import LangevinPC
from .lms import LMS, LMSCorrected
from .unipc import UniPC

_CLASSES: tuple[type[Solver], ...] = (
    # ODE solvers
    Euler, Heun, DPM2, LMS, LMSCorrected, DPMpp2M, DDIM, DPMSolver, DPMpp2S, DPMpp3M,
    DPMpp3MCorrected, UniPC, DEIS, DEISCorrected, IPNDM, IPNDMV, DPMAdaptive,
    # SDE solvers
    EulerAncestral, EulerMaruyama, DDPM, DPMpp2SAncestral, DPMppSDE, DPMpp2MSDE, DPMpp3MSDE,
    LangevinPC,
)

SOLVERS: dict[str, type[Solver]] = {cls.name: cls for cls in _CLASSES}

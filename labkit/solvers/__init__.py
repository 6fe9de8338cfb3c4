"""ODE and SDE samplers over a sigma grid (EDM convention ``D(x, sigma)``).

``SOLVERS`` maps a solver name to its class; each class declares ``order``, ``stochastic`` and
``nfe_per_step``. ``sample(denoiser, x, sigmas, solver=NAME)`` runs one.
"""

from .base import CountingDenoiser, SampleInfo, Solver, ode_derivative
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
from .registry import SOLVERS
from .sample import sample

__all__ = ["SOLVERS", "sample", "Solver", "SampleInfo", "CountingDenoiser", "ode_derivative",
           "Euler", "Heun", "DPM2", "LMS", "DPMpp2M", "EulerAncestral", "EulerMaruyama",
           "DDIM", "DPMSolver", "DPMpp2S", "DPMpp3M", "DPMpp3MCorrected"]

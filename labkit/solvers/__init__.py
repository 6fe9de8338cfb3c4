"""ODE and SDE samplers over a sigma grid (EDM convention ``D(x, sigma)``).

``SOLVERS`` maps a solver name to its class; each class declares ``order``, ``stochastic`` and
``nfe_per_step``. ``sample(denoiser, x, sigmas, solver=NAME)`` runs one.
"""

from .base import CountingDenoiser, SampleInfo, Solver, ode_derivative
from .euler import Euler
from .heun import Heun
from .registry import SOLVERS
from .sample import sample

__all__ = ["SOLVERS", "sample", "Solver", "SampleInfo", "CountingDenoiser", "ode_derivative",
           "Euler", "Heun"]

"""labkit: a theory-and-simulation laboratory for diffusion and score-based generative models.

Exact toy targets (Gaussian mixtures, spheres, curves, point clouds) with closed-form scores and
denoisers at every noise level, samplers over sigma grids, and studies that check published
claims against them. Everything is a denoiser ``D(x, sigma)`` in the EDM convention.
"""

from . import grids, processes, solvers
from .solvers import SOLVERS, SampleInfo, sample
from .targets import (Curve, Embedded, Empirical, Gaussian, GaussianMixture, Product, Sphere,
                      Target)

__version__ = "0.1.0"

__all__ = ["Target", "Gaussian", "GaussianMixture", "Sphere", "Embedded", "Product", "Empirical",
           "Curve", "grids", "processes", "solvers", "sample", "SOLVERS", "SampleInfo", "__version__"]

"""Exact targets: distributions with closed-form noised densities, scores and denoisers.

See ``docs/targets.md`` for every closed form.
"""

from .base import Target
from .curve import Curve
from .embedding import Embedded
from .empirical import Empirical
from .gaussian import Gaussian, GaussianMixture
from .product import Product
from .sphere import Sphere

__all__ = ["Target", "Gaussian", "GaussianMixture", "Sphere", "Embedded", "Product",
           "Empirical", "Curve"]

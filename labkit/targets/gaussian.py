"""Placeholder: being written."""
from .base import Target


class Gaussian(Target):  # placeholder
    pass


class GaussianMixture(Target):  # placeholder
    pass

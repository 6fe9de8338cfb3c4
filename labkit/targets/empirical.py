"""Placeholder: being written."""
from .base import Target


class Empirical(Target):  # placeholder
    pass

"""Placeholder: being written."""
from .base import Target


class Sphere(Target):  # placeholder
    pass

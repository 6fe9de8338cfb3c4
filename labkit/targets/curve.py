"""Placeholder: being written."""
from .base import Target


class Curve(Target):  # placeholder
    pass

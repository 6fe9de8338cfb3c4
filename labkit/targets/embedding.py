"""Placeholder: being written."""
from .base import Target


class Embedded(Target):  # placeholder
    pass

"""Placeholder: being written."""
from .base import Target


class Product(Target):  # placeholder
    pass

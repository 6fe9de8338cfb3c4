"""Products of independent targets: ``x = (x_1, ..., x_J)`` with independent blocks.

Independent Gaussian noise keeps the blocks independent, so ``p_sigma = prod_j p_(j, sigma)``:
log-densities add, and scores and denoisers are the concatenation of the factors'.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Target


class Product(Target):
    """Product ``p(x) = prod_j p_j(x_j)`` of independent targets on consecutive coordinate blocks.

    ``log p_sigma(x) = sum_j log p_(j,sigma)(x_j)``; ``score`` and ``denoise`` are the
    concatenations of the factors' over the blocks ``x_j``.

    Parameters
    ----------
    *factors : Target
        At least one; factor ``j`` acts on coordinates ``offsets[j]:offsets[j + 1]``.

    Attributes
    ----------
    factors : tuple of Target
    dim : int
        ``sum_j factors[j].dim``.
    has_density : bool
        Whether every factor has a density.

    Examples
    --------
    >>> import labkit
    >>> torus = labkit.Product(labkit.Sphere(1, 2), labkit.Sphere(1, 2))   # in R^4
    >>> torus.dim
    4
    """

    def __init__(self, *factors: Target) -> None:
        super().__init__()
        if not factors:
            raise ValueError("factors must contain at least one Target, got an empty product")
        for j, factor in enumerate(factors):
            if not isinstance(factor, Target):
                raise TypeError(f"factors must be labkit Targets, got {type(factor).__name__} "
                                f"at position {j}")
        self.factors = tuple(factors)
        self.dim = sum(f.dim for f in self.factors)
        self.has_density = all(f.has_density for f in self.factors)
        self.chunk_size = min(f.chunk_size for f in self.factors)
        self._dims = [f.dim for f in self.factors]

    @property
    def device(self) -> torch.device:
        """Device of the first factor's parameters."""
        return self.factors[0].device

    def _blocks(self, x: Tensor) -> tuple[Tensor, ...]:
        return torch.split(x, self._dims, dim=-1)

    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        # Factors draw in order from the one generator, so the seed fixes every block.
        return torch.cat([f._sample(n, generator, like) for f in self.factors], dim=-1)

    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        return sum(f._log_prob(xj, sigma) for f, xj in zip(self.factors, self._blocks(x)))

    def _score(self, x: Tensor, sigma: Tensor) -> Tensor:
        return torch.cat([f._score(xj, sigma) for f, xj in zip(self.factors, self._blocks(x))],
                         dim=-1)

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        return torch.cat([f._denoise(xj, sigma) for f, xj in zip(self.factors, self._blocks(x))],
                         dim=-1)

    def __repr__(self) -> str:
        return f"Product({', '.join(repr(f) for f in self.factors)})"

"""Isometric embedding of a target on R^k into a k-dimensional subspace of R^D.

With ``x = Q y`` (``Q`` of shape ``(D, k)``, orthonormal columns) and ``y ~ q``, the clean
distribution is singular for ``D > k``; the noise splits into an in-plane part, which noises ``q``,
and an independent ``N(0, sigma^2 I)`` on the orthogonal complement. Hence

``log p_sigma(x) = log q_sigma(Q^T x) - |(I - Q Q^T) x|^2 / (2 sigma^2)
- ((D - k) / 2) log(2 pi sigma^2)``,
``score(x) = Q score_q(Q^T x) - (I - Q Q^T) x / sigma^2`` and ``D(x, sigma) = Q D_q(Q^T x, sigma)``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import (DEFAULT_DTYPE, as_float_tensor, check_generator, check_positive_int,
                       input_eps)
from .base import Target

# max |Q^T Q - I| accepted for a float64 basis; a basis given in a lower precision gets
# ORTHONORMAL_EPS times its own dtype's eps (float32: 1.2e-4; a float32 Householder QR of a
# (D, k) matrix is typically orthonormal to a few eps) and is then re-orthonormalised in float64.
ORTHONORMAL_TOL = 1e-8
ORTHONORMAL_EPS = 1e3


def check_orthonormal_basis(basis: Any, cols: int, rows: int | None = None,
                            name: str = "basis") -> Tensor:
    """Validate a ``(rows, cols)`` matrix with orthonormal columns; return a float64 copy.

    ``rows=None`` accepts any number of rows ``>= cols``. Raises ``ValueError`` naming ``name``
    when the shape differs or ``max |Q^T Q - I|`` exceeds ``1e-8`` (float64 input) or ``1e3``
    eps of the input's dtype (float32: 1.2e-4). A basis given in a lower precision than float64
    is re-orthonormalised in float64 (QR with the signs of ``diag(R)`` made positive, so the
    result spans the same subspace with the same orientation and stays within the tolerance of
    the input), so that the formulas that assume ``Q^T Q = I`` hold to float64 round-off.
    """
    eps = input_eps(basis)
    tol = max(ORTHONORMAL_TOL, ORTHONORMAL_EPS * eps)
    q = as_float_tensor(basis, name, dtype=DEFAULT_DTYPE)
    expected = f"({'D' if rows is None else rows}, {cols})"
    if q.ndim != 2 or q.shape[1] != cols or (rows is not None and q.shape[0] != rows):
        raise ValueError(f"{name} must have shape {expected} (ambient dimension x subspace "
                         f"dimension), got {tuple(q.shape)}")
    if q.shape[0] < cols:
        raise ValueError(f"{name} must have at least {cols} rows to hold {cols} orthonormal "
                         f"columns, got {tuple(q.shape)}")
    gram = q.T @ q
    deviation = float((gram - torch.eye(cols, dtype=q.dtype, device=q.device)).abs().max())
    if deviation > tol:
        raise ValueError(f"{name} must have orthonormal columns (Q^T Q = I within "
                         f"{tol:.3g}), got max |Q^T Q - I| = {deviation:.3g}")
    if eps > torch.finfo(DEFAULT_DTYPE).eps:
        return _positive_qr(q)
    return q.clone()


def _positive_qr(a: Tensor) -> Tensor:
    """The Q factor of ``a = QR`` with the signs of ``diag(R)`` moved into Q (unique, and Q ~ a
    when ``a`` is nearly orthonormal)."""
    q, r = torch.linalg.qr(a)
    signs = torch.sign(torch.diagonal(r))
    return q * torch.where(signs == 0, torch.ones_like(signs), signs)


def random_orthonormal_basis(rows: int, cols: int,
                             generator: torch.Generator | None = None) -> Tensor:
    """A Haar-random ``(rows, cols)`` float64 matrix with orthonormal columns.

    QR of a standard Gaussian matrix with the signs of ``diag(R)`` moved into ``Q``, which makes
    the law of ``Q`` invariant under rotations (Mezzadri 2007, arXiv:math-ph/0609050).
    """
    rows = check_positive_int(rows, "ambient_dim")
    cols = check_positive_int(cols, "cols")
    check_generator(generator)
    if cols > rows:
        raise ValueError(f"ambient_dim must be >= the subspace dimension {cols}, got {rows}")
    device = generator.device if generator is not None else None
    gaussian = torch.randn(rows, cols, generator=generator, dtype=DEFAULT_DTYPE, device=device)
    return _positive_qr(gaussian)


class Embedded(Target):
    """Isometric embedding ``x = Q y`` of a target ``q`` on R^k into R^D.

    ``log p_sigma(x) = log q_sigma(Q^T x) - |(I - QQ^T) x|^2 / (2 sigma^2) - (D - k)/2 log(2 pi
    sigma^2)``; score ``Q score_q(Q^T x) - (I - QQ^T) x / sigma^2``; denoiser ``Q D_q(Q^T x)``.

    Parameters
    ----------
    target : Target
        The distribution ``q`` on R^k (``k = target.dim``).
    basis : array_like of shape ``(D, k)``
        Orthonormal columns spanning the subspace (``Q^T Q = I`` within 1e-8 in float64, 1e3 eps
        of a lower-precision input dtype, which is then re-orthonormalised), ``D >= k``.

    Attributes
    ----------
    target : Target
    basis : Tensor of shape ``(D, k)``, float64
    dim : int
        The ambient dimension ``D``.
    has_density : bool
        ``D == k`` and ``target.has_density``; otherwise ``log_prob`` and ``score`` need
        ``sigma > 0``.

    Examples
    --------
    >>> import torch, labkit
    >>> cloud = labkit.Empirical(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    >>> flat = labkit.Embedded.random(cloud, 5, generator=torch.Generator().manual_seed(0))
    >>> flat.dim
    5
    """

    def __init__(self, target: Target, basis: Any) -> None:
        super().__init__()
        if not isinstance(target, Target):
            raise TypeError(f"target must be a labkit Target, got {type(target).__name__}")
        q = check_orthonormal_basis(basis, target.dim)
        self.target = target
        self.dim = int(q.shape[0])
        self.has_density = self.dim == target.dim and target.has_density
        self.chunk_size = target.chunk_size
        self._register(basis=q)

    @classmethod
    def random(cls, target: Target, ambient_dim: int,
               generator: torch.Generator | None = None) -> "Embedded":
        """Embed ``target`` into a Haar-random ``target.dim``-dimensional subspace of R^ambient_dim.

        Parameters
        ----------
        target : Target
        ambient_dim : int
            ``D >= target.dim``.
        generator : torch.Generator, optional
            Source of randomness for the basis (QR of a Gaussian matrix with a sign fix).
        """
        if not isinstance(target, Target):
            raise TypeError(f"target must be a labkit Target, got {type(target).__name__}")
        return cls(target, random_orthonormal_basis(ambient_dim, target.dim, generator))

    @property
    def basis(self) -> Tensor:
        """The ``(D, k)`` float64 basis ``Q``."""
        return self._buffers["basis"]

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """In-plane coordinates ``Q^T x`` and the orthogonal residual ``x - Q Q^T x``."""
        q = self._params(x)["basis"]
        y = x @ q
        # The residual is formed explicitly: |x|^2 - |y|^2 would cancel catastrophically.
        return y, x - y @ q.T

    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        y = self.target._sample(n, generator, like)
        return y @ self._params(y)["basis"].T

    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        y, residual = self._split(x)
        inner = self.target._log_prob(y, sigma)
        if self.dim == self.target.dim:
            return inner
        codim = self.dim - self.target.dim
        return (inner - residual.square().sum(-1) / (2 * sigma ** 2)
                - 0.5 * codim * torch.log(2 * math.pi * sigma ** 2))

    def _score(self, x: Tensor, sigma: Tensor) -> Tensor:
        y, residual = self._split(x)
        inner = self.target._score(y, sigma) @ self._params(x)["basis"].T
        if self.dim == self.target.dim:
            return inner
        return inner - residual / sigma[:, None] ** 2

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        q = self._params(x)["basis"]
        return self.target._denoise(x @ q, sigma) @ q.T

    def __repr__(self) -> str:
        return f"Embedded({self.target!r}, dim={self.dim})"

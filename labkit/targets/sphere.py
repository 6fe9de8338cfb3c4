"""The uniform distribution on a k-sphere of radius R in an (k+1)-dimensional subspace of R^D.

Noising the uniform law on the sphere ``|y| = R`` in R^m (``m = k + 1``) is a von Mises-Fisher
integral: ``E_u exp(kappa u.e) = Gamma(m/2) 2^nu kappa^-nu I_nu(kappa)`` with ``nu = m/2 - 1``.
With ``r = |y|`` and ``z = R r / sigma^2`` this gives

``log p_sigma(y) = -(m/2) log(2 pi sigma^2) + log(Gamma(m/2) 2^nu) - (r - R)^2 / (2 sigma^2)
+ log(z^-nu e^-z I_nu(z))``,

and the denoiser ``D(y, sigma) = R (I_(nu+1)(z) / I_nu(z)) y / r``. The sphere in R^D is this
target embedded isometrically (``Embedded``), which adds the Gaussian of the orthogonal part.
See ``docs/targets.md`` (section Spheres) for the derivation.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import DEFAULT_DTYPE, as_float_tensor, check_positive_int
from .base import Target
from .bessel import MAX_ORDER, bessel_ratio, log_bessel_iv_scaled
from .embedding import Embedded, check_orthonormal_basis, random_orthonormal_basis

MAX_K = int(2 * MAX_ORDER + 1)


def _check_dimensions(k: Any, ambient_dim: Any) -> tuple[int, int]:
    """Validate ``1 <= k < ambient_dim`` and ``k <= MAX_K``."""
    ambient_dim = check_positive_int(ambient_dim, "ambient_dim", minimum=2)
    if k == 0 and not isinstance(k, bool):
        raise ValueError("k must be >= 1: the 0-sphere is two points; use "
                         "Embedded(Empirical([[-R], [R]]), basis) for it")
    k = check_positive_int(k, "k", minimum=1)
    if k >= ambient_dim:
        raise ValueError(f"k must satisfy 1 <= k < ambient_dim = {ambient_dim} (the k-sphere "
                         f"spans k + 1 dimensions), got k = {k}")
    if k > MAX_K:
        raise ValueError(f"k must be <= {MAX_K} (Bessel order (k - 1)/2 <= {MAX_ORDER:g}), "
                         f"got {k}")
    return k, ambient_dim


class _CentredSphere(Target):
    """Uniform on ``{y in R^(k+1): |y| = R}``: the sphere in its own span (see module docstring)."""

    has_density = False

    def __init__(self, k: int, radius: float) -> None:
        super().__init__()
        self.dim = k + 1
        self.radius = radius
        self.nu = (k - 1) / 2
        # log(Gamma(m/2) 2^nu), the von Mises-Fisher normaliser's constant.
        self._log_vmf_constant = math.lgamma(self.dim / 2) + self.nu * math.log(2.0)

    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        g = torch.randn(n, self.dim, generator=generator, dtype=like.dtype, device=like.device)
        return self.radius * g / torch.linalg.vector_norm(g, dim=-1, keepdim=True)

    def _log_prob(self, y: Tensor, sigma: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(y, dim=-1)
        var = sigma ** 2
        # -(r^2 + R^2)/(2 s^2) + z = -(r - R)^2/(2 s^2): scaling by e^-z avoids a huge cancellation.
        return (self._log_vmf_constant - 0.5 * self.dim * torch.log(2 * math.pi * var)
                - (r - self.radius) ** 2 / (2 * var)
                + log_bessel_iv_scaled(self.nu, self.radius * r / var))

    def _denoise(self, y: Tensor, sigma: Tensor) -> Tensor:
        r = torch.linalg.vector_norm(y, dim=-1)
        ratio = bessel_ratio(self.nu, self.radius * r / sigma ** 2)
        # At r = 0 the ratio is 0 and y is 0, so any positive floor gives D = 0 there.
        direction = y / r.clamp_min(torch.finfo(y.dtype).tiny)[:, None]
        return (self.radius * ratio)[:, None] * direction


class Sphere(Target):
    """Uniform distribution on the k-sphere ``S^k`` of radius ``R`` in a subspace of R^D.

    With ``y = Q^T x`` (in-plane coordinates), ``r = |y|``, ``z = R r / sigma^2``,
    ``nu = (k - 1) / 2`` and ``x_perp = x - Q y``:
    ``log p_sigma(x) = -(D/2) log(2 pi sigma^2) + log(Gamma(m/2) 2^nu) - ((r - R)^2 + |x_perp|^2)
    / (2 sigma^2) + log(z^-nu e^-z I_nu(z))`` and
    ``D(x, sigma) = R (I_(nu+1)(z) / I_nu(z)) Q y / r``.

    Parameters
    ----------
    k : int
        Intrinsic dimension, ``1 <= k < ambient_dim`` (``k = 1`` is a circle) and ``k <= 2001``
        (Bessel order ``nu <= 1000``). ``k = 0`` (two points) is not a sphere here: use
        ``Empirical`` of the two points, embedded.
    ambient_dim : int
        Dimension ``D`` of the space, ``D > k``.
    radius : float
        ``R > 0``, finite.
    basis : array_like of shape ``(D, k + 1)``, optional
        Orthonormal columns spanning the sphere's subspace (``Q^T Q = I`` within 1e-8); default
        the first ``k + 1`` coordinate axes.

    Attributes
    ----------
    k, dim, radius : int, int, float
    basis : Tensor of shape ``(D, k + 1)``, float64
    has_density : bool
        Always ``False``: ``log_prob`` and ``score`` need ``sigma > 0``.

    References
    ----------
    K. V. Mardia and P. E. Jupp, "Directional Statistics", Wiley, 2000, Sec. 9.3 (the von
    Mises-Fisher normaliser).

    Examples
    --------
    >>> import torch, labkit
    >>> circle = labkit.Sphere(1, 2)
    >>> circle.denoise(torch.tensor([[2.0, 0.0]], dtype=torch.float64), 1e-3)
    tensor([[1.0000, 0.0000]], dtype=torch.float64)
    """

    has_density = False

    def __init__(self, k: int, ambient_dim: int, radius: float = 1.0, basis: Any = None) -> None:
        super().__init__()
        k, ambient_dim = _check_dimensions(k, ambient_dim)
        radius_t = as_float_tensor(radius, "radius")
        if radius_t.ndim != 0 or float(radius_t) <= 0:
            raise ValueError(f"radius must be a finite number > 0, got {radius!r}")
        m = k + 1
        if basis is None:
            basis = torch.eye(ambient_dim, m, dtype=DEFAULT_DTYPE)
        self.k = k
        self.dim = ambient_dim
        self.radius = float(radius_t)
        self._embedded = Embedded(_CentredSphere(k, self.radius),
                                  check_orthonormal_basis(basis, m, rows=ambient_dim))

    @classmethod
    def random_subspace(cls, k: int, ambient_dim: int, radius: float = 1.0,
                        generator: torch.Generator | None = None) -> "Sphere":
        """A sphere in a Haar-random ``(k + 1)``-dimensional subspace of R^ambient_dim.

        The basis is the Q factor of a Gaussian ``(ambient_dim, k + 1)`` matrix with the signs of
        ``diag(R)`` folded in (Mezzadri 2007, arXiv:math-ph/0609050); same seed, same sphere.
        """
        k, ambient_dim = _check_dimensions(k, ambient_dim)
        return cls(k, ambient_dim, radius, random_orthonormal_basis(ambient_dim, k + 1, generator))

    @property
    def basis(self) -> Tensor:
        """The ``(D, k + 1)`` float64 basis of the sphere's subspace."""
        return self._embedded.basis

    @property
    def device(self) -> torch.device:
        """Device of the parameters (the embedding basis): where ``sample`` draws by default."""
        return self._embedded.device

    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        return self._embedded._sample(n, generator, like)

    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._embedded._log_prob(x, sigma)

    def _score(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._embedded._score(x, sigma)

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._embedded._denoise(x, sigma)

    def __repr__(self) -> str:
        return f"Sphere(k={self.k}, ambient_dim={self.dim}, radius={self.radius:g})"

"""Hypothesis strategies for exact targets, noise levels, sigma grids and query points.

Every number is drawn through hypothesis from a bounded range (so examples shrink towards
simple ones: identity rotations, unit eigenvalues, the fewest components), and every object
is well-conditioned by construction, so a failure points at the code under test rather than
at an ill-posed example.

Conditioning guarantees (defaults):

- covariance eigenvalues lie in ``eigenvalue_range = (0.1, 4.0)`` (condition number <= 40),
  except the exact zeros of a low-rank component;
- means lie in ``[-mean_bound, mean_bound]^d`` with ``mean_bound = 4``;
- mixture weights are ``v_k / sum v`` with ``v_k`` in ``[0.2, 1]``, so every weight is at least
  ``0.2 / (0.2 + (K - 1))`` (``1/16`` for ``K = 4``);
- sphere radii lie in ``radius_range = (0.5, 2.0)``.

Rotations are ``expm(A)`` of a skew-symmetric ``A`` with drawn entries in ``[-pi, pi]``
(re-orthonormalised by QR), so they shrink to the identity.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor

from ..targets import Gaussian, GaussianMixture, Sphere

COVARIANCE_KINDS = ("full", "diagonal", "isotropic", "low_rank")

_FLOAT = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False)


# ---------------------------------------------------------------------------------- validation
def _int_strategy(value: Any, name: str, minimum: int) -> st.SearchStrategy[int]:
    if isinstance(value, st.SearchStrategy):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or a hypothesis strategy of ints, "
                        f"got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return st.just(value)


def _bool_strategy(value: Any, name: str) -> st.SearchStrategy[bool]:
    if isinstance(value, st.SearchStrategy):
        return value
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool or a hypothesis strategy of bools, "
                        f"got {type(value).__name__}")
    return st.just(value)


def _range(value: Any, name: str, *, positive: bool = True) -> tuple[float, float]:
    """A ``(lo, hi)`` pair of finite floats with ``lo <= hi`` (``> 0`` when ``positive``)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a (low, high) pair of floats, got {value!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise ValueError(f"{name} must be finite with low <= high, got {value!r}")
    if positive and lo <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return lo, hi


def _kinds(covariance: Any) -> tuple[str, ...]:
    kinds = (covariance,) if isinstance(covariance, str) else tuple(covariance)
    bad = [k for k in kinds if k not in COVARIANCE_KINDS]
    if not kinds or bad:
        raise ValueError(f"covariance must be a non-empty subset of {COVARIANCE_KINDS}, "
                         f"got {covariance!r}")
    return kinds


def _dtype(dtype: Any) -> torch.dtype:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    return dtype


# ---------------------------------------------------------------------------------- building blocks
def _log_uniform(lo: float, hi: float) -> st.SearchStrategy[float]:
    """Draw ``log v`` uniformly-ish in ``[log lo, log hi]`` and exponentiate (clamped)."""
    if lo == hi:
        return st.just(lo)
    return st.floats(math.log(lo), math.log(hi), **_FLOAT).map(
        lambda t: min(hi, max(lo, math.exp(t))))


def _vector(draw: st.DrawFn, n: int, lo: float, hi: float) -> Tensor:
    """``n`` bounded floats drawn by hypothesis, as a float64 tensor."""
    return torch.tensor(draw(st.lists(st.floats(lo, hi, **_FLOAT), min_size=n, max_size=n)),
                        dtype=torch.float64)


def _rotation(draw: st.DrawFn, d: int) -> Tensor:
    """A ``(d, d)`` orthogonal matrix ``expm(A)``, ``A`` skew with entries in ``[-pi, pi]``."""
    if d == 1:
        return torch.ones(1, 1, dtype=torch.float64)
    iu = torch.triu_indices(d, d, offset=1)
    a = torch.zeros(d, d, dtype=torch.float64)
    a[iu[0], iu[1]] = _vector(draw, iu.shape[1], -math.pi, math.pi)
    q, r = torch.linalg.qr(torch.linalg.matrix_exp(a - a.T))
    return q * torch.sign(torch.diagonal(r))  # QR cleans up round-off; signs keep Q ~ expm(A)


def _covariance(draw: st.DrawFn, kind: str, d: int, eig: tuple[float, float]) -> Tensor:
    """One covariance of the given kind: ``()`` isotropic, ``(d,)`` diagonal, else ``(d, d)``.

    ``low_rank`` has rank ``r`` drawn in ``1..d-1`` (a point mass, rank 0, when ``d = 1``) and
    its ``r`` non-zero eigenvalues in ``eig``.
    """
    log_eigs = st.floats(math.log(eig[0]), math.log(eig[1]), **_FLOAT) if eig[0] < eig[1] \
        else st.just(math.log(eig[0]))
    if kind == "isotropic":
        return torch.tensor(min(eig[1], max(eig[0], math.exp(draw(log_eigs)))),
                            dtype=torch.float64)
    lam = torch.tensor(draw(st.lists(log_eigs, min_size=d, max_size=d)),
                       dtype=torch.float64).exp().clamp(eig[0], eig[1])
    if kind == "diagonal":
        return lam
    if kind == "low_rank":
        rank = draw(st.integers(1, d - 1)) if d > 1 else 0
        lam[rank:] = 0.0
    u = _rotation(draw, d)
    cov = (u * lam) @ u.T
    return (cov + cov.T) / 2


# ---------------------------------------------------------------------------------- targets
def gaussian_mixtures(dim: int | st.SearchStrategy[int] = st.integers(1, 6),
                      max_components: int = 4,
                      covariance: str | tuple[str, ...] = COVARIANCE_KINDS,
                      labelled: bool = False, dtype: torch.dtype = torch.float64, *,
                      eigenvalue_range: tuple[float, float] = (0.1, 4.0),
                      mean_bound: float = 4.0) -> st.SearchStrategy[GaussianMixture]:
    """Strategy for well-conditioned :class:`~labkit.GaussianMixture` targets.

    Draws ``d`` from ``dim``, ``K`` in ``1..max_components``, one covariance kind from
    ``covariance`` for the whole mixture, and then ``K`` means in ``[-mean_bound, mean_bound]^d``,
    covariances ``S_k = U_k diag(lambda_k) U_k^T`` with eigenvalues in ``eigenvalue_range``
    (drawn log-uniformly) and weights ``v_k / sum v`` with ``v_k`` in ``[0.2, 1]``. Kinds:

    - ``"isotropic"``: ``S_k = lambda_k I``, passed as covs of shape ``(K,)``;
    - ``"diagonal"``: ``S_k = diag(lambda_k)``, shape ``(K, d)``;
    - ``"full"``: random rotation ``U_k``, shape ``(K, d, d)``;
    - ``"low_rank"``: as ``"full"`` with rank ``r_k`` in ``1..d-1`` (``d - r_k`` zero
      eigenvalues; rank 0, a point mass, when ``d = 1``); the mixture is then singular
      (use ``sigma > 0``).

    Parameters
    ----------
    dim : int or strategy of int
        Dimension ``d >= 1``.
    max_components : int
        Largest ``K``.
    covariance : str or tuple of str
        Allowed kinds, any non-empty subset of ``("full", "diagonal", "isotropic", "low_rank")``.
    labelled : bool
        Also draw class labels: an int64 tensor of shape ``(K,)`` with values in ``0..K-1``.
    dtype : torch.dtype
        Of the parameter tensors handed to the constructor.
    eigenvalue_range : (float, float)
        Bounds on non-zero covariance eigenvalues (condition number ``<= hi / lo``).
    mean_bound : float
        Bound on the absolute value of mean entries.

    Returns
    -------
    hypothesis strategy of GaussianMixture
    """
    dims = _int_strategy(dim, "dim", 1)
    k_max = _int_strategy(max_components, "max_components", 1)
    kinds = _kinds(covariance)
    eig = _range(eigenvalue_range, "eigenvalue_range")
    bound = _range(mean_bound, "mean_bound")[0]
    labelled = _bool_strategy(labelled, "labelled")
    dtype = _dtype(dtype)

    @st.composite
    def build(draw: st.DrawFn) -> GaussianMixture:
        d = draw(dims)
        k = draw(st.integers(1, draw(k_max)))
        kind = draw(st.sampled_from(kinds))
        means = _vector(draw, k * d, -bound, bound).reshape(k, d)
        covs = torch.stack([_covariance(draw, kind, d, eig) for _ in range(k)])
        weights = _vector(draw, k, 0.2, 1.0)
        labels = None
        if draw(labelled):
            labels = torch.tensor(draw(st.lists(st.integers(0, k - 1), min_size=k, max_size=k)),
                                  dtype=torch.int64)
        return GaussianMixture(means.to(dtype), covs.to(dtype), weights=(weights / weights.sum())
                               .to(dtype), labels=labels)

    return build()


def gaussians(dim: int | st.SearchStrategy[int] = st.integers(1, 6),
              covariance: str | tuple[str, ...] = COVARIANCE_KINDS,
              dtype: torch.dtype = torch.float64, *,
              eigenvalue_range: tuple[float, float] = (0.1, 4.0),
              mean_bound: float = 4.0) -> st.SearchStrategy[Gaussian]:
    """Strategy for well-conditioned :class:`~labkit.Gaussian` targets ``N(m, S)``.

    The mean and covariance are drawn as one component of :func:`gaussian_mixtures` (same
    kinds, ranges and guarantees); the covariance is passed as a scalar (isotropic), a ``(d,)``
    vector (diagonal) or a ``(d, d)`` matrix (full, low-rank).

    Parameters
    ----------
    dim, covariance, dtype, eigenvalue_range, mean_bound
        As in :func:`gaussian_mixtures`.

    Returns
    -------
    hypothesis strategy of Gaussian
    """
    dims = _int_strategy(dim, "dim", 1)
    kinds = _kinds(covariance)
    eig = _range(eigenvalue_range, "eigenvalue_range")
    bound = _range(mean_bound, "mean_bound")[0]
    dtype = _dtype(dtype)

    @st.composite
    def build(draw: st.DrawFn) -> Gaussian:
        d = draw(dims)
        cov = _covariance(draw, draw(st.sampled_from(kinds)), d, eig)
        return Gaussian(_vector(draw, d, -bound, bound).to(dtype), cov.to(dtype))

    return build()


def embedded_spheres(max_k: int = 3, max_ambient_dim: int = 8,
                     random_subspace: bool | st.SearchStrategy[bool] = True, *,
                     radius_range: tuple[float, float] = (0.5, 2.0)
                     ) -> st.SearchStrategy[Sphere]:
    """Strategy for :class:`~labkit.Sphere` targets: uniform on ``S^k`` of radius ``R`` in ``R^D``.

    Draws ``k`` in ``1..min(max_k, max_ambient_dim - 1)``, ``D`` in ``k+1..max_ambient_dim`` and
    ``R`` log-uniformly in ``radius_range``. With ``random_subspace`` the sphere sits in the span
    of the first ``k + 1`` columns of a drawn rotation (passed as ``basis`` of shape
    ``(D, k + 1)``); otherwise in the first ``k + 1`` coordinates.

    Parameters
    ----------
    max_k : int
        Largest intrinsic dimension, ``>= 1``.
    max_ambient_dim : int
        Largest ambient dimension, ``>= 2``.
    random_subspace : bool or strategy of bool
        Whether to rotate the sphere into a random subspace.
    radius_range : (float, float)
        Bounds on ``R``.

    Returns
    -------
    hypothesis strategy of Sphere
    """
    _int_strategy(max_k, "max_k", 1)
    _int_strategy(max_ambient_dim, "max_ambient_dim", 2)
    rotate = _bool_strategy(random_subspace, "random_subspace")
    radii = _log_uniform(*_range(radius_range, "radius_range"))
    k_hi = min(max_k, max_ambient_dim - 1)

    @st.composite
    def build(draw: st.DrawFn) -> Sphere:
        k = draw(st.integers(1, k_hi))
        ambient = draw(st.integers(k + 1, max_ambient_dim))
        radius = draw(radii)
        basis = _rotation(draw, ambient)[:, :k + 1] if draw(rotate) else None
        return Sphere(k, ambient, radius=radius, basis=basis)

    return build()


# ---------------------------------------------------------------------------------- noise levels
def sigmas(min_value: float = 1e-4, max_value: float = 1e3) -> st.SearchStrategy[float]:
    """Strategy for noise levels in ``[min_value, max_value]``, log-uniform-ish.

    Draws ``log sigma`` in ``[log min_value, log max_value]`` with hypothesis and exponentiates,
    so every decade is about equally represented; examples shrink towards ``sigma = 1`` when it
    is in range (``log sigma = 0``), else towards the end nearer to it.

    Parameters
    ----------
    min_value, max_value : float
        ``0 < min_value <= max_value``.

    Returns
    -------
    hypothesis strategy of float
    """
    lo, hi = _range((min_value, max_value), "min_value/max_value")
    return _log_uniform(lo, hi)


def sigma_grids(min_steps: int = 1, max_steps: int = 64,
                sigma_min_range: tuple[float, float] = (1e-3, 1e-1),
                sigma_max_range: tuple[float, float] = (1.0, 100.0),
                final_zero: bool | st.SearchStrategy[bool] = st.booleans(),
                dtype: torch.dtype = torch.float64) -> st.SearchStrategy[Tensor]:
    """Strategy for valid sigma grids: 1-D tensors, strictly decreasing, finite, positive
    except an optional trailing 0, with at least one step.

    These are the grid rules of the solver layer. With ``N`` steps drawn in
    ``min_steps..max_steps``, ``sigma_max`` and ``sigma_min`` drawn log-uniformly from their
    ranges, and ``P`` positive entries (``P = N`` with a final zero, else ``N + 1``), the grid is
    ``log sigma_i = log sigma_max - (c_i / c_{P-1}) (log sigma_max - log sigma_min)`` where
    ``c_i`` are cumulative sums of drawn gaps in ``[0.1, 1]`` (so log-steps differ by at most a
    factor 10), followed by ``0`` when ``final_zero``. With a single positive entry the grid is
    ``[sigma_max, 0]``.

    Parameters
    ----------
    min_steps, max_steps : int
        Bounds on the number of steps ``N = len(grid) - 1``, ``1 <= min_steps <= max_steps``.
    sigma_min_range, sigma_max_range : (float, float)
        Ranges for the smallest positive and the largest sigma; every value of the first must be
        below every value of the second.
    final_zero : bool or strategy of bool
        Whether the grid ends in ``0`` (integrate to the clean distribution).
    dtype : torch.dtype
        Of the grid. In float32 the grid stays strictly decreasing as long as
        ``sigma_max / sigma_min`` is at least ``1 + 1e-3`` (checked).

    Returns
    -------
    hypothesis strategy of Tensor of shape ``(N + 1,)``
    """
    for value, name in ((min_steps, "min_steps"), (max_steps, "max_steps")):
        if isinstance(value, st.SearchStrategy):
            raise TypeError(f"{name} must be an int, got a strategy")
        _int_strategy(value, name, 1)
    if min_steps > max_steps:
        raise ValueError(f"min_steps must be <= max_steps, got {min_steps} > {max_steps}")
    smin = _range(sigma_min_range, "sigma_min_range")
    smax = _range(sigma_max_range, "sigma_max_range")
    if not smin[1] * (1.0 + 1e-3) <= smax[0]:
        raise ValueError(f"sigma_min_range must lie below sigma_max_range by a factor >= 1.001, "
                         f"got {sigma_min_range!r} and {sigma_max_range!r}")
    zero = _bool_strategy(final_zero, "final_zero")
    dtype = _dtype(dtype)
    min_value, max_value = _log_uniform(*smin), _log_uniform(*smax)

    @st.composite
    def build(draw: st.DrawFn) -> Tensor:
        n_steps = draw(st.integers(min_steps, max_steps))
        ends_in_zero = draw(zero)
        n_pos = n_steps if ends_in_zero else n_steps + 1
        hi = math.log(draw(max_value))
        if n_pos == 1:
            positive = torch.tensor([hi], dtype=torch.float64)
        else:
            lo = math.log(draw(min_value))
            c = _vector(draw, n_pos - 1, 0.1, 1.0).cumsum(0)
            positive = torch.cat([torch.tensor([hi], dtype=torch.float64),
                                  hi - (c / c[-1]) * (hi - lo)])
        grid = positive.exp()
        if ends_in_zero:
            grid = torch.cat([grid, grid.new_zeros(1)])
        return grid.to(dtype)

    return build()


# ---------------------------------------------------------------------------------- points
def points(target: Any, n: int | st.SearchStrategy[int] = st.integers(1, 16),
           spread: float = 2.0, far: float = 50.0,
           dtype: torch.dtype = torch.float64) -> st.SearchStrategy[Tensor]:
    """Strategy for query points around a target's support, including far-away ones.

    Row ``i`` is ``a_i + t_i u_i``: ``a_i`` an exact sample of ``target`` (drawn with a
    ``torch.Generator`` seeded by a hypothesis-drawn integer, which shrinks to seed 0), ``u_i``
    a drawn direction with entries in ``[-1, 1]`` and ``t_i`` a drawn distance, either near
    (``[0, spread]``) or far (``[spread, far]``); hypothesis shrinks towards near points.

    Parameters
    ----------
    target : Target
        Anything with ``.dim`` and ``.sample(n, generator, dtype=)``.
    n : int or strategy of int
        Number of rows.
    spread : float
        Largest offset of a near point (in the target's units).
    far : float
        Largest offset of a far point, ``>= spread``.
    dtype : torch.dtype
        Of the points.

    Returns
    -------
    hypothesis strategy of Tensor of shape ``(n, target.dim)``
    """
    dim = getattr(target, "dim", None)
    if not isinstance(dim, int) or not callable(getattr(target, "sample", None)):
        raise TypeError(f"target must have an int .dim and a .sample method, "
                        f"got {type(target).__name__}")
    rows = _int_strategy(n, "n", 1)
    near_hi = _range(spread, "spread", positive=False)[0]
    far_hi = _range(far, "far", positive=False)[0]
    if not 0.0 <= near_hi <= far_hi:
        raise ValueError(f"spread and far must satisfy 0 <= spread <= far, got {spread}, {far}")
    dtype = _dtype(dtype)
    distance = st.one_of(st.floats(0.0, near_hi, **_FLOAT), st.floats(near_hi, far_hi, **_FLOAT))

    @st.composite
    def build(draw: st.DrawFn) -> Tensor:
        m = draw(rows)
        seed = draw(st.integers(0, 2 ** 32 - 1))
        anchors = target.sample(m, torch.Generator().manual_seed(seed), dtype=torch.float64)
        u = _vector(draw, m * dim, -1.0, 1.0).reshape(m, dim)
        t = torch.tensor(draw(st.lists(distance, min_size=m, max_size=m)), dtype=torch.float64)
        return (anchors + t[:, None] * u).to(dtype)

    return build()

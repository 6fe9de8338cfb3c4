"""Shared geometry: the bounding box, tolerances, the Chebyshev-ball LP, hyperplane grouping.

Every polytope here is ``{x : A x <= b}`` inside the box. Rows are normalised to unit length
before any LP, so slacks and radii are Euclidean distances in input units and one length
tolerance serves everywhere.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import null_space
from scipy.optimize import linprog

# Relative length tolerance: a set is "full-dimensional" when it contains a ball of radius
# LENGTH_RTOL * (box diameter). HiGHS solves to ~1e-7 absolute feasibility on unit rows, and a
# box of diameter ~1-10 then resolves ~1e-7 at best; 1e-6 keeps a margin of 10.
LENGTH_RTOL = 1e-6
# Two affine maps (or hyperplanes) are equal when they differ by less than MAP_RTOL times the
# network's scale: float64 composition of a few layers is accurate to ~1e-13 relative.
MAP_RTOL = 1e-9


class ExactCountLimitError(ValueError):
    """Raised when an exact count would exceed a size limit (``max_regions``, ``max_lps``,
    ``max_monomials``); the message names the limit and suggests the sampling lower bound."""


def limit_error(what: str, limit_name: str, limit: int) -> ExactCountLimitError:
    return ExactCountLimitError(
        f"{what} exceeds {limit_name}={limit}: the network is too large for the exact method. "
        f"Raise {limit_name} if you can wait, or use "
        f"labkit.tropical.sample_lower_bound(net, box, n) for a fast lower bound.")


@dataclass(frozen=True)
class Box:
    """The axis-aligned box ``[low, high]`` where regions are counted."""

    low: np.ndarray
    high: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    @property
    def diameter(self) -> float:
        return float(np.linalg.norm(self.high - self.low))

    @property
    def constraints(self) -> tuple[np.ndarray, np.ndarray]:
        """``(A, b)`` with ``A x <= b`` equal to the box (2d unit rows)."""
        eye = np.eye(self.dim)
        return np.vstack([eye, -eye]), np.concatenate([self.high, -self.low])

    def length_tol(self, tol: float | None) -> float:
        if tol is None:
            return LENGTH_RTOL * self.diameter
        if isinstance(tol, (bool, np.bool_)) or not isinstance(tol, numbers.Real):
            raise TypeError(f"tol must be a positive real number (a length in input units), "
                            f"got {type(tol).__name__}")
        if not (np.isfinite(float(tol)) and float(tol) > 0):
            raise ValueError(f"tol must be a positive finite float (a length in input units), "
                             f"got {tol!r}")
        return float(tol)


def as_box(box: Any, dim: int) -> Box:
    """Validate ``box``: a positive float ``r`` (the cube ``[-r, r]^dim``), a tuple or list
    ``(low, high)`` of floats or ``(dim,)`` arrays, or a ``(dim, 2)`` array or tensor of
    ``[low, high]`` rows.

    A tuple or list of two entries is always ``(low, high)``; an array or tensor of shape
    ``(dim, 2)`` is always rows (so in 2-D ``np.array([[0, 1], [2, 3]])`` is ``x in [0, 1]``,
    ``y in [2, 3]``); an array of shape ``(2,)`` is ``(low, high)`` for every coordinate.
    """
    form = (f"box must be a positive float r (for [-r, r]^{dim}), a tuple (low, high) of floats "
            f"or ({dim},) arrays, or a ({dim}, 2) array of [low, high] rows")
    if isinstance(box, Box):
        if box.dim != dim:
            raise ValueError(f"box has dimension {box.dim}, the network's input has {dim}")
        return box
    if isinstance(box, bool):
        raise TypeError(f"{form}, got bool")
    if isinstance(box, (int, float, np.floating, np.integer)):
        r = float(box)
        if not np.isfinite(r) or r <= 0:
            raise ValueError(f"{form}, got {box}")
        low, high = np.full(dim, -r), np.full(dim, r)
    elif isinstance(box, (tuple, list)) and len(box) == 2:
        ends = []
        for end in box:
            try:
                value = np.asarray(end.detach().cpu() if hasattr(end, "detach") else end,
                                   dtype=np.float64)
            except (TypeError, ValueError) as err:
                raise TypeError(f"{form}, got {type(end).__name__} in the pair") from err
            if value.shape not in ((), (dim,)):
                raise ValueError(f"{form}, got an end of shape {value.shape}")
            ends.append(np.broadcast_to(value, (dim,)).copy())
        low, high = ends
    else:
        try:
            arr = np.asarray(box.detach().cpu() if hasattr(box, "detach") else box,
                             dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise TypeError(f"{form}, got {type(box).__name__}") from err
        if arr.shape == (dim, 2):
            low, high = arr[:, 0].copy(), arr[:, 1].copy()
        elif arr.shape == (2,):
            low, high = np.full(dim, arr[0]), np.full(dim, arr[1])
        else:
            raise ValueError(f"{form}, got an array of shape {arr.shape}")
    if not (np.isfinite(low).all() and np.isfinite(high).all()) or not (high > low).all():
        raise ValueError(f"{form} with finite low < high in every coordinate, got low={low}, "
                         f"high={high}")
    return Box(low, high)


@dataclass
class LPCounter:
    """Counts the linear programs solved (reported in every result), or, with other ``what``
    and ``name``, another unit of work (the polygon clips of the tropical method)."""

    n: int = 0
    limit: int | None = None
    what: str = "the number of linear programs"
    name: str = "max_lps"

    def tick(self, k: int = 1) -> None:
        self.n += k
        if self.limit is not None and self.n > self.limit:
            raise limit_error(self.what, self.name, self.limit)


def clip_counter(max_clips: int) -> LPCounter:
    """The work budget of the tropical method: polygon clipping operations (~30-100 us each)."""
    return LPCounter(limit=max_clips, what="the number of polygon clips of the tropical method",
                     name="max_clips")


def chebyshev(a: np.ndarray, b: np.ndarray, counter: LPCounter, *,
              eq: tuple[np.ndarray, np.ndarray] | None = None,
              allow_negative: bool = False) -> tuple[np.ndarray | None, float]:
    """Largest ball inside ``{A x <= b}`` (intersected with the flat ``E x = e``, if given).

    Solves ``max r  s.t.  A_j (x0 + N y) + r ||A_j N|| <= b_j`` by HiGHS, with ``x0 + N y``
    parametrising the flat (``N`` an orthonormal null-space basis), so the radius is measured
    inside the flat: coincident constraint hyperplanes (duplicate neurons) do not shrink it.
    Rows whose projected normal vanishes are constants: infeasible when violated by more than
    ``1e-12 * (1 + |b|)``. With ``allow_negative`` the radius may be negative (the smallest
    uniform relaxation making the set non-empty, sign flipped), which tests whether closed sets
    touch. Returns ``(center, radius)``; ``(None, -inf)`` when infeasible.
    """
    d = a.shape[1]
    if eq is not None:
        e_mat, e_rhs = np.atleast_2d(eq[0]), np.atleast_1d(eq[1])
        x0 = np.linalg.lstsq(e_mat, e_rhs, rcond=None)[0]
        if np.abs(e_mat @ x0 - e_rhs).max() > 1e-9 * (1 + np.abs(e_rhs).max()):
            return None, -np.inf
        basis = null_space(e_mat)
    else:
        x0, basis = np.zeros(d), np.eye(d)
    k = basis.shape[1]
    ap, bp = a @ basis, b - a @ x0
    norms = np.linalg.norm(ap, axis=1)
    flat = norms <= 1e-12 * max(1.0, float(np.abs(a).max(initial=0.0)))
    if (bp[flat] < -1e-12 * (1.0 + np.abs(b[flat]))).any():
        return None, -np.inf
    ap, bp, norms = ap[~flat], bp[~flat], norms[~flat]
    if k == 0:
        return x0, np.inf if ap.shape[0] == 0 else float(np.min(bp))
    an, bn = ap / norms[:, None], bp / norms
    counter.tick()
    # Variables (y, r); the box rows keep r bounded, the explicit bound guards unboundedness.
    span = float(np.abs(bn).max(initial=1.0)) + 1.0
    res = linprog(np.r_[np.zeros(k), -1.0], A_ub=np.hstack([an, np.ones((an.shape[0], 1))]),
                  b_ub=bn, bounds=[(None, None)] * k + [(-span if allow_negative else 0.0, span)],
                  method="highs")
    if res.status != 0:
        return None, -np.inf
    return x0 + basis @ res.x[:k], float(res.x[k])


class UnionFind:
    """Disjoint sets over ``0 .. n-1`` (path halving)."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.find(i)] = self.find(j)

    def n_sets(self) -> int:
        return len({self.find(i) for i in range(len(self.parent))})

    def labels(self) -> np.ndarray:
        roots = [self.find(i) for i in range(len(self.parent))]
        _, lab = np.unique(roots, return_inverse=True)
        return lab


def normalised_hyperplanes(g: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Rows ``(g, h) / ||g||`` of the hyperplanes ``g x + h = 0``, signed so that the first
    coordinate of ``g`` larger than 1e-9 in size is positive (``g`` and ``-g`` are one plane)."""
    norm = np.linalg.norm(g, axis=1, keepdims=True)
    rows = np.hstack([g, h[:, None]]) / norm
    lead = np.argmax(np.abs(rows[:, :-1]) > 1e-9, axis=1)
    sign = np.sign(rows[np.arange(rows.shape[0]), lead])
    return rows * sign[:, None]


def group_rows(rows: np.ndarray, tol: np.ndarray | float) -> np.ndarray:
    """Labels grouping rows that agree within ``tol`` (per column, broadcast) — transitively."""
    n = rows.shape[0]
    uf = UnionFind(n)
    for start in range(0, n, 512):  # chunked (n, n, cols) comparison bounds memory
        close = (np.abs(rows[start:start + 512, None, :] - rows[None, :, :]) <= tol).all(-1)
        for i, j in zip(*np.nonzero(close)):
            if i + start < j:
                uf.union(int(i + start), int(j))
    return uf.labels() if n else np.zeros(0, dtype=int)

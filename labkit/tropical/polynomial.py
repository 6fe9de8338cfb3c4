"""Max-plus (tropical) polynomials with real exponents, and exact monomial pruning.

A max-plus polynomial is ``p(x) = max_k (c_k + e_k . x)`` (tropical sum ``⊕ = max``, tropical
product ``⊙ = +``): coefficients ``c`` of shape ``(m,)`` and exponents ``e`` of shape
``(m, d)``. Exponents are real (a "tropical signomial", Zhang, Naitzat & Lim 2018,
arXiv:1805.07091, Def. 2.1) because network weights are.

Pruning drops monomials that are never the maximum. A monomial that is maximal only on a set
without interior (a tie along a lower-dimensional set) is dropped as well: ``p`` is continuous,
so another monomial attains the same value there and ``p`` is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from . import _polygon
from ._geometry import Box, LPCounter, chebyshev, limit_error

# Exponent vectors equal to this relative precision are merged (keeping the largest
# coefficient): products of float64 weights reach the same exponent along different paths with
# ~1e-15 relative differences, which would otherwise leave near-duplicate monomials.
EXPONENT_RTOL = 1e-10


@dataclass(frozen=True)
class MaxPlusPolynomial:
    """``p(x) = max_k (coefficients[k] + exponents[k] . x)``.

    Parameters
    ----------
    coefficients : ndarray, shape (m,)
    exponents : ndarray, shape (m, d)
    """

    coefficients: np.ndarray
    exponents: np.ndarray

    @property
    def n_monomials(self) -> int:
        return int(self.coefficients.shape[0])

    @property
    def dim(self) -> int:
        return int(self.exponents.shape[1])

    @classmethod
    def constant(cls, value: float, dim: int) -> "MaxPlusPolynomial":
        return cls(np.array([float(value)]), np.zeros((1, dim)))

    @classmethod
    def coordinate(cls, i: int, dim: int) -> "MaxPlusPolynomial":
        """The monomial ``x_i``."""
        return cls(np.zeros(1), np.eye(dim)[i:i + 1])

    def monomial_values(self, x: np.ndarray) -> np.ndarray:
        """``c_k + e_k . x`` for every point and monomial, shape ``(n, m)``."""
        return np.asarray(x, dtype=np.float64) @ self.exponents.T + self.coefficients

    def evaluate(self, x: Any) -> Any:
        """``p(x)`` at points ``x`` of shape ``(n, d)``; a tensor in gives a tensor out."""
        if isinstance(x, torch.Tensor):
            e = torch.as_tensor(self.exponents, dtype=x.dtype, device=x.device)
            c = torch.as_tensor(self.coefficients, dtype=x.dtype, device=x.device)
            return (x @ e.T + c).amax(dim=1)
        return self.monomial_values(x).max(axis=1)

    __call__ = evaluate

    def scaled(self, w: float) -> "MaxPlusPolynomial":
        """The tropical power ``p^{⊙w} = w p`` for ``w >= 0`` (``w = 0`` gives the constant 0)."""
        if w < 0:
            raise ValueError(f"w must be >= 0 (a tropical power), got {w}")
        if w == 0:
            return MaxPlusPolynomial.constant(0.0, self.dim)
        return MaxPlusPolynomial(w * self.coefficients, w * self.exponents)

    def times(self, other: "MaxPlusPolynomial") -> "MaxPlusPolynomial":
        """Tropical product ``p ⊙ q = p + q``: the Minkowski sum of the monomials."""
        c = (self.coefficients[:, None] + other.coefficients[None, :]).ravel()
        e = (self.exponents[:, None, :] + other.exponents[None, :, :]).reshape(-1, self.dim)
        return MaxPlusPolynomial(c, e)

    def plus(self, other: "MaxPlusPolynomial") -> "MaxPlusPolynomial":
        """Tropical sum ``p ⊕ q = max(p, q)``: the union of the monomials."""
        return MaxPlusPolynomial(np.concatenate([self.coefficients, other.coefficients]),
                                 np.vstack([self.exponents, other.exponents]))

    def deduplicated(self) -> "MaxPlusPolynomial":
        """Merge monomials with equal exponents (to ``EXPONENT_RTOL``), keeping the largest
        coefficient (exact: ``max(a + e.x, b + e.x) = max(a, b) + e.x``)."""
        scale = max(1.0, float(np.abs(self.exponents).max(initial=0.0)))
        keys = np.round(self.exponents / (scale * EXPONENT_RTOL)).astype(np.int64)
        order = np.lexsort((-self.coefficients,) + tuple(keys.T[::-1]))
        _, first = np.unique(keys[order], axis=0, return_index=True)
        keep = np.sort(order[first])
        return MaxPlusPolynomial(self.coefficients[keep], self.exponents[keep])

    def pruned(self, box: Box | None = None, *, tol: float | None = None,
               counter: LPCounter | None = None, max_monomials: int | None = None,
               clips: LPCounter | None = None) -> "MaxPlusPolynomial":
        """Drop the monomials that are never the maximum (on ``R^d``, or inside ``box``).

        Monomial ``k`` is kept when its region ``{x : c_k + e_k.x >= c_l + e_l.x for all l}``
        (intersected with ``box``) has non-empty interior: a Chebyshev ball of radius ``> tol``
        (default ``1e-6 *`` box diameter), found by one HiGHS LP per monomial; in 2-D with a box,
        by clipping the box polygon instead (no LP). Without a box, the test is exact up to
        float64: a monomial of ``R^d`` is kept iff ``(e_k, c_k)`` is a vertex of the upper hull
        of the lifted points, checked by the LP ``max t`` subject to
        ``c_k - c_l + (e_k - e_l).x >= t`` (kept iff ``t > 1e-12`` times the coefficient scale).

        ``clips`` (optional) counts the polygon clips of the 2-D path against its limit.

        Caveat: float64 arithmetic. Monomials maximal only on a sliver thinner than ``tol`` are
        dropped (an error of at most ``tol`` times the slope differences in the value there).
        """
        p = self.deduplicated()
        if max_monomials is not None and p.n_monomials > max_monomials:
            raise limit_error(f"a tropical polynomial with {p.n_monomials} monomials",
                              "max_monomials", max_monomials)
        if p.n_monomials <= 1:
            return p
        counter = counter if counter is not None else LPCounter()
        if box is None:
            keep = _keep_unbounded(p, counter)
        elif p.dim == 2:
            keep = np.array([cell.shape[0] > 0 for cell in monomial_cells_2d(p, box, tol, clips)])
        else:
            keep = _keep_in_box(p, box, box.length_tol(tol), counter)
        return MaxPlusPolynomial(p.coefficients[keep], p.exponents[keep])


def _halfplanes(p: MaxPlusPolynomial, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(e_l - e_k) . x <= c_k - c_l`` for ``l != k``: where monomial ``k`` is maximal."""
    others = np.arange(p.n_monomials) != k
    return p.exponents[others] - p.exponents[k], p.coefficients[k] - p.coefficients[others]


def _keep_unbounded(p: MaxPlusPolynomial, counter: LPCounter) -> np.ndarray:
    from scipy.optimize import linprog
    keep = np.zeros(p.n_monomials, dtype=bool)
    tiny = 1e-12 * max(1.0, float(np.abs(p.coefficients).max()))
    for k in range(p.n_monomials):
        a, b = _halfplanes(p, k)
        counter.tick()
        res = linprog(np.r_[np.zeros(p.dim), -1.0], A_ub=np.hstack([a, np.ones((a.shape[0], 1))]),
                      b_ub=b, bounds=[(None, None)] * p.dim + [(None, 1.0)], method="highs")
        keep[k] = res.status == 0 and res.x[-1] > tiny
    return keep


def _keep_in_box(p: MaxPlusPolynomial, box: Box, tol: float, counter: LPCounter) -> np.ndarray:
    keep = np.zeros(p.n_monomials, dtype=bool)
    box_a, box_b = box.constraints
    for k in range(p.n_monomials):
        a, b = _halfplanes(p, k)
        _, r = chebyshev(np.vstack([a, box_a]), np.concatenate([b, box_b]), counter)
        keep[k] = r > tol
    return keep


def _corners(box: Box) -> np.ndarray:
    grids = np.meshgrid(*[[lo, hi] for lo, hi in zip(box.low, box.high)], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


def _upper_hull_neighbours(p: MaxPlusPolynomial) -> list[np.ndarray] | None:
    """For each monomial, the monomials it shares an upper-hull facet with (``None`` for those
    off the upper hull of the lifted points ``(e_k, c_k)``), or ``None`` when Qhull cannot
    build the hull (fewer than 4 points, or all lifted points coplanar)."""
    from scipy.spatial import ConvexHull, QhullError
    pts = np.hstack([p.exponents, p.coefficients[:, None]])
    # Per-axis positive rescaling keeps the hull's combinatorics and its "up" direction.
    pts = pts - pts.mean(axis=0)
    spread = np.abs(pts).max(axis=0)
    if p.n_monomials < 4 or (spread == 0).any():
        return None
    try:
        hull = ConvexHull(pts / spread)
    except QhullError:
        return None
    tri = hull.simplices[hull.equations[:, 2] > 1e-12]
    neighbours: list = [None] * p.n_monomials
    for k in np.unique(tri):
        neighbours[k] = np.setdiff1d(np.unique(tri[(tri == k).any(axis=1)]), [k])
    return neighbours


def monomial_cells_2d(p: MaxPlusPolynomial, box: Box, tol: float | None = None,
                      clips: LPCounter | None = None) -> list[np.ndarray]:
    """Polygon of each monomial's region inside a 2-D ``box`` (empty ``(0, 2)`` array when the
    monomial is never maximal on a set of width ``> tol``).

    The region of monomial ``k`` in ``R^2`` is the normal cone of the upper hull of the lifted
    points ``(e_l, c_l)`` at vertex ``k`` (Zhang et al. 2018, Prop. 3.1): only the monomials
    off the upper hull are dead, and only upper-hull neighbours bound a region. Qhull supplies
    both; when it cannot (degenerate, coplanar lifted points) every other monomial's half-plane
    is used. Each region is the box polygon clipped by those half-planes; ``clips`` (optional)
    counts the clipping operations against its limit.
    """
    clips = clips if clips is not None else LPCounter()
    eps = box.length_tol(tol)
    neighbours = _upper_hull_neighbours(p)
    if neighbours is None:
        everyone = np.arange(p.n_monomials)
        neighbours = [np.setdiff1d(everyone, [k]) for k in everyone]
    square = _polygon.box_polygon(box.low, box.high)
    corners = _corners(box)
    cells = []
    for k, ls in enumerate(neighbours):
        if ls is None:
            cells.append(_polygon.EMPTY)
            continue
        a = p.exponents[ls] - p.exponents[k]
        b = p.coefficients[k] - p.coefficients[ls]
        n = np.linalg.norm(a, axis=1)
        ok = n > 0  # equal exponents were merged by deduplicated(); guard anyway
        a, b = a[ok] / n[ok, None], b[ok] / n[ok]
        slack = b[:, None] - a @ corners.T  # (constraints, corners): < 0 where violated
        if (slack < -eps).all(axis=1).any():
            cells.append(_polygon.EMPTY)
            continue
        poly = square
        for i in np.argsort(slack.min(axis=1)):
            if slack[i].min() >= -eps:
                break  # sorted: the remaining half-planes contain the whole box
            clips.tick()
            poly = _polygon.clip(poly, a[i], b[i], eps)
            if poly.shape[0] == 0:
                break
        cells.append(poly if _polygon.width(poly) > eps else _polygon.EMPTY)
    return cells

"""Exact count of the decision-boundary pieces of a binary ReLU classifier.

The classifier is ``sign f(x)`` with ``f`` a scalar ReLU network (a logit, or the difference of
two logits; see :func:`labkit.tropical.network.binary_network`); its decision boundary is
``{f = 0}``. Piwek, Klukowski & Hu (UAI 2023, arXiv:2306.08805) measure boundary complexity by
the number of *affine pieces* of this set. labkit's counting rule, used by both methods:

* on each linear region ``R`` (where ``f = g.x + h``), the candidate piece is
  ``R ∩ {g.x + h = 0}``; it counts when it is ``(d-1)``-dimensional (an inscribed
  ``(d-1)``-ball of radius ``> tol`` inside the hyperplane);
* pieces are then merged into maximal flat pieces: two pieces on the same hyperplane are one
  piece when they overlap in a ``(d-1)``-set (a boundary running along a region edge is seen
  from both sides) or meet in a ``(d-2)``-face (in 2-D: collinear segments touching at a
  point, e.g. a straight boundary crossing a region edge, or passing through a vertex).

So a straight boundary line through several regions is **one** piece and an "X" of two lines is
two. For generic weights the boundary bends at every region edge it crosses and the count is
simply the number of regions it crosses; the merge rule only matters for degenerate geometry.
Where ``f`` vanishes on a whole region the boundary is not ``(d-1)``-dimensional there: such
linear regions are reported in ``flat_regions`` and contribute no piece. A piece of ``{f = 0}``
is counted whether or not ``f`` changes sign across it: ``f = |x|`` has one piece (the line
``x = 0``) although the class ``f > 0`` never changes; this is the zero set of ``f``, the
boundary of the closed class regions ``{f >= 0}`` and ``{f <= 0}`` taken together.

Source caveat: the paper's full text was not available while this was written; the rule above
is our reading of "the number of affine pieces of the boundary" (maximal flat pieces), and the
un-merged per-region count is reported alongside (``region_pieces``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._geometry import (MAP_RTOL, LPCounter, UnionFind, as_box, chebyshev, group_rows,
                        normalised_hyperplanes)
from .network import binary_network
from .regions import enumerate_regions
from .tropical_count import boundary_segments, merge_collinear, tropical_refinement


@dataclass(frozen=True)
class BoundaryCount:
    """Result of :func:`count_boundary_pieces`.

    Attributes
    ----------
    pieces : int
        Maximal flat pieces of ``{f = 0}`` in the box (the count to compare across methods).
    region_pieces : int
        Pieces before merging: activation regions (``"lp"``) or tropical cells
        (``"tropical"``) whose ``{f = 0}`` part is ``(d-1)``-dimensional. Method-specific.
    linear_regions : int
        Affine pieces of ``f`` in the box (the by-product count).
    flat_regions : int
        Linear regions (maximal affine pieces, as in ``linear_regions``) on which ``f``
        vanishes identically: the zero set is full-dimensional there and contributes no piece.
    method : str
    n_lps : int
    seconds : float
    tol : float
    """

    pieces: int
    region_pieces: int
    linear_regions: int
    flat_regions: int
    method: str
    n_lps: int
    seconds: float
    tol: float


def _lp_pieces(enum: Any, counter: LPCounter) -> tuple[int, int, int]:
    network, eps = enum.network, enum.tol
    atol = MAP_RTOL * network.scale
    d = network.input_dim
    planes, polys, flat = [], [], set()
    for reg, label in zip(enum.regions, enum.labels):
        g, h = reg.jacobian[0], float(reg.offset[0])
        if np.linalg.norm(g) <= atol:
            if abs(h) <= atol:
                flat.add(int(label))
            continue
        row = normalised_hyperplanes(g[None, :], np.array([h]))[0]
        _, r = chebyshev(reg.A, reg.b, counter, eq=(row[None, :d], -row[d:]))
        if r > eps or (d == 1 and r >= -eps):
            planes.append(row)
            polys.append((reg.A, reg.b))
    if not planes:
        return 0, 0, len(flat)
    rows = np.array(planes)
    groups = group_rows(rows, np.r_[np.full(d, 1e-7), eps])
    uf = UnionFind(len(planes))
    for gid in np.unique(groups):
        members = np.nonzero(groups == gid)[0]
        for x, i in enumerate(members):
            for j in members[x + 1:]:
                if uf.find(int(i)) == uf.find(int(j)):
                    continue
                if _touch(rows[i], polys[i], polys[j], d, eps, counter):
                    uf.union(int(i), int(j))
    return uf.n_sets(), len(planes), len(flat)


def _touch(plane: np.ndarray, pi: tuple, pj: tuple, d: int, eps: float,
           counter: LPCounter) -> bool:
    """Whether two pieces on ``plane`` overlap or meet in a ``(d-2)``-dimensional face."""
    a, b = np.vstack([pi[0], pj[0]]), np.concatenate([pi[1], pj[1]])
    eq = (plane[None, :d], -plane[d:])
    point, r = chebyshev(a, b, counter, eq=eq, allow_negative=True)
    if point is None or r < -eps:
        return False
    if r > eps or d <= 2:
        return True  # overlap, or (2-D) collinear segments meeting at a point
    for row in np.nonzero(np.abs(a @ point - b) <= 2 * eps)[0]:
        face = (np.vstack([plane[None, :d], a[row]]), np.r_[-plane[d:], b[row]])
        if chebyshev(a, b, counter, eq=face)[1] > eps:
            return True
    return False


def count_boundary_pieces(net: Any, box: Any, method: str = "lp", *, logit: Any = None,
                          tol: float | None = None, max_regions: int = 20000,
                          max_lps: int = 500000, max_monomials: int = 20000,
                          max_clips: int = 2_000_000, check_samples: int = 100_000,
                          progress: bool = False) -> BoundaryCount:
    """Exact number of affine pieces of the decision boundary ``{f = 0}`` inside ``box``.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array
        ``r`` for ``[-r, r]^d``, ``(low, high)``, or a ``(d, 2)`` array.
    method : {"lp", "tropical"}
        ``"lp"``: enumerate activation regions with LPs (any input dimension);
        ``"tropical"``: polygon geometry of the tropical form ``F - G`` (input dimension 2).
    logit : None, int or pair
        The scalar ``f``; default: the single output, or ``out[1] - out[0]`` for 2 outputs.
    tol : float, optional
        Length tolerance (default ``1e-6 *`` box diameter).
    max_regions, max_lps, max_monomials, max_clips, check_samples : int
        Positive size limits and the up-front sample check, as in
        :func:`labkit.tropical.counting.count_linear_regions`; exceeding a limit raises
        ``ExactCountLimitError`` naming it.
    progress : bool
        Show a progress bar on stderr (default off; results are identical either way):
        ``"lp"`` a counter of activation regions found (the total is not known in advance),
        ``"tropical"`` a bar over the monomials of ``G`` whose cells are being intersected.

    Returns
    -------
    BoundaryCount
    """
    if method not in ("lp", "tropical"):
        raise ValueError(f"method must be 'lp' or 'tropical', got {method!r}")
    start = time.perf_counter()
    network = binary_network(net, logit)
    dom = as_box(box, network.input_dim)
    eps = dom.length_tol(tol)
    if method == "lp":
        enum = enumerate_regions(network, dom, tol=eps, max_regions=max_regions,
                                 max_lps=max_lps, check_samples=check_samples,
                                 progress=progress)
        counter = LPCounter(n=enum.n_lps, limit=max_lps)
        pieces, raw, flat = _lp_pieces(enum, counter)
        return BoundaryCount(pieces, raw, enum.n_linear_regions, flat, "lp", counter.n,
                             time.perf_counter() - start, eps)
    form, cells = tropical_refinement(network, dom, eps, max_regions=max_regions,
                                      max_monomials=max_monomials, max_clips=max_clips,
                                      check_samples=check_samples, progress=progress)
    lines, intervals, flat = boundary_segments(cells, eps, network.scale)
    pieces = merge_collinear(lines, intervals, eps)
    return BoundaryCount(pieces, len(intervals), cells.n_linear_regions, flat, "tropical",
                         form.n_lps, time.perf_counter() - start, eps)

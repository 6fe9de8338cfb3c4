"""Exact enumeration of the linear regions of a ReLU network inside a box, with LPs.

Definitions (inside the box ``B``):

* an **activation region** is the set of points of ``B`` with one activation pattern
  ``s = [z(x) > 0]``, counted when it has non-empty interior. With the pattern fixed, every
  pre-activation is affine, ``z_k = a_k(s) x + c_k(s)``, and the region is the polytope
  ``{x in B : a_k x + c_k >= 0 if s_k, <= 0 otherwise}``;
* a **linear region** (affine piece) is a maximal connected set on which the network is one
  affine map: activation regions with equal output maps ``(J, o)`` glued across shared facets.

Zhang, Naitzat & Lim (2018, arXiv:1805.07091, Def. 6.1) and Piwek, Klukowski & Hu (2023,
arXiv:2306.08805) count linear regions in the second sense ("affine pieces"); Serra et al.
(2018, arXiv:1711.02114) count activation regions. Both are returned. Activation regions
outnumber linear regions where a neuron's flip does not change the output (zero outgoing
weights, duplicate neurons cancelling, dead downstream layers).

Algorithm: breadth-first search over activation regions. A pattern's polytope is tested by
the Chebyshev-ball LP (HiGHS): it counts when the largest inscribed ball has radius ``> tol``.
Its facets come from the vertices of the polytope (Qhull half-space intersection, with one LP
per constraint as fallback); across each facet the search steps ``tol`` beyond the facet's
vertex centroid and reads the neighbour's pattern by a forward pass, so coincident hyperplanes
(duplicate neurons) flip together. The search is also seeded with the patterns of a small grid,
which costs nothing and guards against a missed neighbour behind a sliver thinner than ``tol``.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._checks import check_positive_int
from ..progress import progress as progress_bar
from ._geometry import (MAP_RTOL, Box, LPCounter, UnionFind, as_box, chebyshev, limit_error)
from .network import ReLUNetwork, as_network
from .sampling import check_region_limit


@dataclass(frozen=True)
class ActivationRegion:
    """One activation region: ``{x : A x <= b}`` (box rows included).

    Attributes
    ----------
    pattern : ndarray of bool, shape (n_hidden,)
    center, radius : Chebyshev centre and radius (an interior point and its clearance)
    A, b : the polytope's constraints, rows of unit length (hidden neurons first, then box)
    jacobian, offset : the output map ``J x + o`` on the region, shapes ``(out, d)``, ``(out,)``
    """

    pattern: np.ndarray
    center: np.ndarray
    radius: float
    A: np.ndarray
    b: np.ndarray
    jacobian: np.ndarray
    offset: np.ndarray


@dataclass
class RegionEnumeration:
    """All activation regions of a network in a box, and their grouping into linear regions.

    Attributes
    ----------
    regions : list of ActivationRegion
    labels : ndarray of int, shape (len(regions),)
        Linear-region index of each activation region.
    adjacency : list of (int, int, int)
        ``(i, j, row)``: regions ``i`` and ``j`` share a facet on constraint row ``row`` of ``i``.
    n_lps : int
    seconds : float
    tol : float
        The length tolerance used.
    """

    network: ReLUNetwork
    box: Box
    regions: list[ActivationRegion]
    labels: np.ndarray
    adjacency: list[tuple[int, int, int]] = field(default_factory=list)
    n_lps: int = 0
    seconds: float = 0.0
    tol: float = 0.0

    @property
    def n_activation_regions(self) -> int:
        return len(self.regions)

    @property
    def n_linear_regions(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def _key(pattern: np.ndarray) -> bytes:
    return np.packbits(pattern).tobytes() + bytes([len(pattern) % 8])


def region_constraints(network: ReLUNetwork, box: Box, pattern: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(A, b, J, o)``: the polytope ``A x <= b`` of ``pattern`` (rows normalised; zero rows
    kept as constant constraints) and the output map on it. ``pattern`` is first made
    canonical (:meth:`ReLUNetwork.canonical_pattern`: neurons identically zero on the region
    inactive), so the two states of such a neuron give one and the same region."""
    pattern = network.canonical_pattern(pattern, MAP_RTOL * network.scale)
    a, c, jac, off = network.region_maps(pattern)
    sign = np.where(pattern, -1.0, 1.0)  # active: -(a x + c) <= 0; inactive: a x + c <= 0
    rows, rhs = sign[:, None] * a, -sign * c
    norms = np.linalg.norm(rows, axis=1)
    scale = np.where(norms > 0, norms, 1.0)
    box_a, box_b = box.constraints
    return (np.vstack([rows / scale[:, None], box_a]), np.concatenate([rhs / scale, box_b]),
            jac, off)


def _facets(a: np.ndarray, b: np.ndarray, center: np.ndarray, tol: float,
            counter: LPCounter) -> list[tuple[int, np.ndarray]]:
    """``(row, point)`` for each facet: ``point`` in the facet's relative interior."""
    d = a.shape[1]
    live = np.linalg.norm(a, axis=1) > 0
    if d >= 2:
        from scipy.spatial import HalfspaceIntersection, QhullError
        try:
            verts = HalfspaceIntersection(np.hstack([a[live], -b[live, None]]), center).intersections
        except (QhullError, ValueError):
            verts = None
        if verts is not None:
            out = []
            on = np.abs(a @ verts.T - b[:, None]) <= tol  # (rows, vertices)
            for row in np.nonzero(live & (on.sum(axis=1) >= d))[0]:
                pts = verts[on[row]]
                if np.linalg.matrix_rank(pts - pts[0], tol=tol) >= d - 1:
                    out.append((int(row), pts.mean(axis=0)))
            return out
    out = []
    for row in np.nonzero(live)[0]:
        p, r = chebyshev(a, b, counter, eq=(a[row:row + 1], b[row:row + 1]))
        if r > tol or (d == 1 and r >= -tol):
            out.append((int(row), p))
    return out


def enumerate_regions(net: Any, box: Any, *, tol: float | None = None,
                      max_regions: int = 20000, max_lps: int = 500000,
                      seed_grid: int = 16, check_samples: int = 100_000,
                      progress: bool = False) -> RegionEnumeration:
    """Enumerate every activation region of ``net`` in ``box`` and group them into linear
    regions (see the module docstring for both definitions and the algorithm).

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array — see ``as_box``
    tol : float, optional
        Length tolerance in input units (default ``1e-6 *`` box diameter): regions whose
        inscribed ball has radius ``<= tol`` are lower-dimensional and not counted.
    max_regions, max_lps : int
        Positive limits; exceeding one raises :class:`ExactCountLimitError` (a ``ValueError``)
        that suggests :func:`labkit.tropical.sample_lower_bound`. ``max_regions`` is first
        checked up front against the distinct activation patterns of ``check_samples`` uniform
        points (a lower bound on the count, ~0.1-1 s), so a network far too large fails at once.
    seed_grid : int
        Points per axis of the seeding grid (``seed_grid ** d`` points, capped at 65536).
    check_samples : int
        Points of the up-front check (fixed seed; their patterns also seed the search);
        ``0`` skips it.
    progress : bool
        Show a progress counter on stderr (tqdm, ``unit="region"``, no total: the count is not
        known in advance), advanced once per activation region found. The result is the same
        either way.

    Notes
    -----
    Patterns are canonical: a neuron whose pre-activation is identically zero on a region
    (row ``(a_k, c_k)`` within ``MAP_RTOL`` times the network scale of 0) is taken inactive,
    so such a region is counted once, not once per state of that neuron.
    """
    start = time.perf_counter()
    network = as_network(net)
    dom = as_box(box, network.input_dim)
    eps = dom.length_tol(tol)
    max_regions = check_positive_int(max_regions, "max_regions")
    counter = LPCounter(limit=check_positive_int(max_lps, "max_lps"))
    seed_grid = check_positive_int(seed_grid, "seed_grid")
    check_samples = check_positive_int(check_samples, "check_samples", minimum=0)
    sampled = check_region_limit(network, dom, max_regions, check_samples,
                                 "the number of activation regions")
    d = network.input_dim
    per_axis = max(2, min(seed_grid, int(65536 ** (1.0 / d))))
    axes = [np.linspace(lo, hi, per_axis + 2)[1:-1] for lo, hi in zip(dom.low, dom.high)]
    grid = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
    seeds = np.unique(np.vstack([network.patterns(grid), sampled]), axis=0)
    atol = MAP_RTOL * network.scale
    index: dict[bytes, int] = {}
    regions: list[ActivationRegion] = []
    adjacency: list[tuple[int, int, int]] = []
    tried: set[bytes] = set()
    queue = deque(seeds)
    pending_links: list[tuple[int, bytes, int]] = []
    # A counter bar (the total is unknown), advanced once per region found.
    with progress_bar(iter(()), desc="activation regions (lp)", unit="region",
                      enable=bool(progress)) as bar:
        while queue:
            pattern = network.canonical_pattern(queue.popleft(), atol)
            key = _key(pattern)
            if key in tried:
                continue
            tried.add(key)
            a, b, jac, off = region_constraints(network, dom, pattern)
            center, radius = chebyshev(a, b, counter)
            if center is None or radius <= eps:
                continue
            if len(regions) >= max_regions:
                raise limit_error("the number of activation regions", "max_regions", max_regions)
            i = len(regions)
            index[key] = i
            regions.append(ActivationRegion(pattern, center, radius, a, b, jac, off))
            bar.update(1)
            for row, point in _facets(a, b, center, eps, counter):
                if row >= network.n_hidden:
                    continue  # a box facet: nothing beyond
                probe = point + eps * a[row]  # step across (rows point outward)
                nxt = network.canonical_pattern(network.patterns(probe[None, :])[0], atol)
                nkey = _key(nxt)
                pending_links.append((i, nkey, row))
                if nkey not in tried:
                    queue.append(nxt)
    for i, nkey, row in pending_links:
        if nkey in index:
            adjacency.append((i, index[nkey], row))
    labels = _merge_equal_maps(regions, adjacency, network, eps, counter)
    return RegionEnumeration(network, dom, regions, labels, adjacency, counter.n,
                             time.perf_counter() - start, eps)


def _merge_equal_maps(regions: list[ActivationRegion], adjacency: list[tuple[int, int, int]],
                      network: ReLUNetwork, eps: float, counter: LPCounter) -> np.ndarray:
    """Glue facet-adjacent activation regions whose output maps agree (to ``MAP_RTOL`` times
    the network scale); each adjacency is confirmed by an LP on the shared facet."""
    uf = UnionFind(len(regions))
    atol = MAP_RTOL * network.scale
    for i, j, row in adjacency:
        ri, rj = regions[i], regions[j]
        if uf.find(i) == uf.find(j):
            continue
        if (np.abs(ri.jacobian - rj.jacobian).max() > atol
                or np.abs(ri.offset - rj.offset).max() > atol):
            continue
        a, b = np.vstack([ri.A, rj.A]), np.concatenate([ri.b, rj.b])
        _, r = chebyshev(a, b, counter, eq=(ri.A[row:row + 1], ri.b[row:row + 1]))
        if r > eps or (ri.A.shape[1] == 1 and r > -eps):
            uf.union(i, j)
    return uf.labels()

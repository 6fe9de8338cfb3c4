"""Counts read off the tropical form ``f = F - G`` in 2-D, by exact polygon geometry (no LP).

Each monomial ``i`` of ``F`` owns the convex polygon ``P_i`` where it is maximal, and each
monomial ``j`` of ``G`` owns ``Q_j``; the common refinement of the two subdivisions (dual to the
normal fans of the Newton polytopes, Zhang et al. 2018, Sec. 3-5) has the cells
``C_ij = P_i ∩ Q_j`` with non-empty interior, and on ``C_ij`` the network is the affine map
``(e_i - e'_j) . x + (c_i - c'_j)``. Hence

* linear regions = cells glued across shared edges when their affine maps agree
  (a cell is one affine piece, but an affine piece may span several cells);
* decision boundary = the tropical hypersurface-like set ``{F = G}``: on ``C_ij`` the segment
  of the line ``(e_i - e'_j).x + c_i - c'_j = 0`` inside the polygon; pieces are maximal
  straight segments (collinear segments that overlap or touch are one piece).

This path never solves an LP or reads an activation pattern, so it checks
:func:`labkit.tropical.regions.enumerate_regions` independently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _polygon
from .._checks import check_positive_int
from ..progress import progress as progress_bar
from ._geometry import (MAP_RTOL, Box, LPCounter, UnionFind, clip_counter, group_rows,
                        limit_error, normalised_hyperplanes)
from .network import ReLUNetwork
from .polynomial import monomial_cells_2d
from .rational import TropicalRational, tropical_form
from .sampling import check_region_limit


@dataclass
class TropicalCells:
    """The common refinement of ``F`` and ``G`` inside the box.

    Attributes
    ----------
    polygons : list of ndarray
    slopes : ndarray (n_cells, 2), offsets : ndarray (n_cells,)
        ``f = slopes . x + offsets`` on each cell.
    labels : ndarray (n_cells,)
        Linear-region index of each cell.
    """

    polygons: list[np.ndarray]
    slopes: np.ndarray
    offsets: np.ndarray
    labels: np.ndarray

    @property
    def n_linear_regions(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0


def tropical_cells(form: TropicalRational, box: Box, eps: float, max_regions: int,
                   clips: LPCounter | None = None, *, progress: bool = False) -> TropicalCells:
    """Cells ``P_i ∩ Q_j`` of width ``> eps``, grouped into linear regions; ``clips``
    (optional) counts the polygon clips against its limit; ``progress`` shows a bar on
    stderr over the monomial polygons ``Q_j`` of ``G`` (the outer loop of the products)."""
    clips = clips if clips is not None else LPCounter()
    if form.F.dim != 2:
        raise ValueError(f"the tropical count is implemented for input dimension 2, got "
                         f"{form.F.dim}; use method='lp'")
    fp = [(i, c) for i, c in enumerate(monomial_cells_2d(form.F, box, eps, clips))
          if c.shape[0]]
    gp = [(j, c) for j, c in enumerate(monomial_cells_2d(form.G, box, eps, clips))
          if c.shape[0]]
    f_lo = np.array([c.min(axis=0) for _, c in fp])
    f_hi = np.array([c.max(axis=0) for _, c in fp])
    polys, slopes, offsets = [], [], []
    for j, q in progress_bar(gp, desc="tropical cells (G monomials)", unit="monomial",
                             enable=bool(progress)):
        lo, hi = q.min(axis=0), q.max(axis=0)
        overlap = ((f_lo <= hi + eps) & (f_hi >= lo - eps)).all(axis=1)
        edges = np.roll(q, -1, axis=0) - q  # Q_j is convex, ccw: clip by its edges' half-planes
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        lengths = np.linalg.norm(normals, axis=1)
        normals, rhs = normals / lengths[:, None], (normals * q).sum(axis=1) / lengths
        for (i, p) in (fp[k] for k in np.nonzero(overlap)[0]):
            cell = p
            for n, r in zip(normals, rhs):
                clips.tick()
                cell = _polygon.clip(cell, n, r, eps)
                if cell.shape[0] == 0:
                    break
            if cell.shape[0] and _polygon.width(cell) > eps:
                polys.append(cell)
                slopes.append(form.F.exponents[i] - form.G.exponents[j])
                offsets.append(form.F.coefficients[i] - form.G.coefficients[j])
                if len(polys) > max_regions:
                    raise limit_error("the number of tropical cells", "max_regions", max_regions)
    slopes_arr = np.array(slopes).reshape(-1, 2)
    offsets_arr = np.array(offsets)
    # Cells with equal affine maps that share an edge are one linear region.
    uf = UnionFind(len(polys))
    if polys:
        atol = MAP_RTOL * form.network.scale
        same = group_rows(np.hstack([slopes_arr, offsets_arr[:, None]]), atol)
        for g in np.unique(same):
            members = np.nonzero(same == g)[0]
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    a, b = members[x], members[y]
                    if _polygon.share_edge(polys[a], polys[b], eps):
                        uf.union(int(a), int(b))
    return TropicalCells(polys, slopes_arr, offsets_arr, uf.labels())


def tropical_refinement(network: ReLUNetwork, box: Box, eps: float, *, max_regions: int,
                        max_monomials: int, max_clips: int, check_samples: int,
                        progress: bool = False) -> tuple[TropicalRational, TropicalCells]:
    """The tropical form of the scalar ``network`` and its cells in ``box``, after the up-front
    sample check of ``max_regions`` (see :func:`labkit.tropical.sampling.check_region_limit`);
    one ``max_clips`` budget covers the form and the cells; ``progress`` shows a bar over
    the cell products (see :func:`tropical_cells`)."""
    if network.input_dim != 2:
        raise ValueError(f"the tropical count is implemented for input dimension 2, got "
                         f"{network.input_dim}; use method='lp'")
    max_regions = check_positive_int(max_regions, "max_regions")
    check_samples = check_positive_int(check_samples, "check_samples", minimum=0)
    check_region_limit(network, box, max_regions, check_samples,
                       "the work of the tropical method")
    form = tropical_form(network, box, tol=eps, max_monomials=max_monomials,
                         max_clips=max_clips)
    clips = clip_counter(max_clips)
    clips.n = form.n_clips
    return form, tropical_cells(form, box, eps, max_regions, clips, progress=progress)


def boundary_segments(cells: TropicalCells, eps: float, scale: float
                      ) -> tuple[np.ndarray, list[tuple[float, float]], int]:
    """Per cell, the segment of ``{f = 0}``: returns (normalised line rows ``(g, h)/||g||`` of
    shape ``(k, 3)``, intervals along each line, number of linear regions where ``f`` vanishes
    identically)."""
    lines, intervals, flat = [], [], set()
    for poly, g, h, label in zip(cells.polygons, cells.slopes, cells.offsets, cells.labels):
        if np.linalg.norm(g) <= MAP_RTOL * scale:
            if abs(h) <= MAP_RTOL * scale:
                flat.add(int(label))
            continue
        row = normalised_hyperplanes(g[None, :], np.array([h]))[0]
        # The interval coordinate follows the normalised (signed) line, comparable in a group.
        seg = _polygon.line_segment(poly, row[:2], row[2], eps)
        if seg is not None:
            lines.append(row)
            intervals.append(seg)
    return np.array(lines).reshape(-1, 3), intervals, len(flat)


def merge_collinear(lines: np.ndarray, intervals: list[tuple[float, float]], eps: float,
                    rtol: float = 1e-7) -> int:
    """Number of maximal straight pieces: segments on one line (normals within ``rtol``,
    offsets within ``eps``) whose intervals overlap or touch are merged. The interval
    coordinate ``u . x`` depends only on the (normalised) line, so it is comparable within a
    group."""
    if len(intervals) == 0:
        return 0
    groups = group_rows(lines, np.array([rtol, rtol, eps]))
    count = 0
    for gid in np.unique(groups):
        ivs = sorted(intervals[k] for k in np.nonzero(groups == gid)[0])
        end = -np.inf
        for t0, t1 in ivs:
            if t0 > end + eps:
                count += 1
            end = max(end, t1)
    return count

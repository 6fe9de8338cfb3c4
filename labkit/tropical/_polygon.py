"""Exact-as-float64 convex polygon geometry in the plane (the 2-D tropical count).

Polygons are ``(k, 2)`` arrays of vertices in counter-clockwise order; an empty polygon has
``k = 0``. Clipping uses a length tolerance ``eps``: a vertex within ``eps`` of the cutting line
counts as on it, so near-coincident lines do not create sliver polygons.
"""

from __future__ import annotations

import numpy as np

EMPTY = np.zeros((0, 2))


def box_polygon(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    return np.array([[low[0], low[1]], [high[0], low[1]], [high[0], high[1]], [low[0], high[1]]])


def clip(poly: np.ndarray, a: np.ndarray, b: float, eps: float) -> np.ndarray:
    """``poly ∩ {x : a.x <= b}`` with ``a`` a unit vector (Sutherland-Hodgman, one edge)."""
    if poly.shape[0] == 0:
        return poly
    v = poly @ a - b
    if (v <= eps).all():
        return poly
    if (v >= -eps).all():
        return EMPTY
    out = []
    n = poly.shape[0]
    for i in range(n):
        j = (i + 1) % n
        if v[i] <= eps:
            out.append(poly[i])
        if (v[i] < -eps and v[j] > eps) or (v[i] > eps and v[j] < -eps):
            t = v[i] / (v[i] - v[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    res = np.array(out)
    if res.shape[0] > 1:  # drop repeated consecutive vertices
        keep = np.linalg.norm(res - np.roll(res, -1, axis=0), axis=1) > 1e-3 * eps
        res = res[keep]
    return res if res.shape[0] >= 3 else EMPTY


def width(poly: np.ndarray) -> float:
    """``2 * area / perimeter``: between the inradius and twice it for a convex polygon; the
    2-D stand-in for the Chebyshev radius (a polygon is full-dimensional when this > tol)."""
    if poly.shape[0] < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    perimeter = float(np.linalg.norm(poly - np.roll(poly, -1, axis=0), axis=1).sum())
    return 2.0 * area / perimeter if perimeter > 0 else 0.0


def line_segment(poly: np.ndarray, g: np.ndarray, h: float,
                 eps: float) -> tuple[float, float] | None:
    """The part of the line ``g.x + h = 0`` inside ``poly``, as an interval ``(t0, t1)`` of the
    coordinate ``t = u.x`` along the line's direction ``u = (-g_2, g_1)/||g||``, or ``None``
    when it is shorter than ``eps`` (the line misses the polygon or only touches a vertex)."""
    gn = float(np.linalg.norm(g))
    v = (poly @ g + h) / gn  # signed distances of the vertices to the line
    if (v > eps).all() or (v < -eps).all():
        return None
    u = np.array([-g[1], g[0]]) / gn
    ts = list(poly[np.abs(v) <= eps] @ u)
    n = poly.shape[0]
    for i in range(n):
        j = (i + 1) % n
        if (v[i] < -eps and v[j] > eps) or (v[i] > eps and v[j] < -eps):
            t = v[i] / (v[i] - v[j])
            ts.append(float((poly[i] + t * (poly[j] - poly[i])) @ u))
    if not ts:
        return None
    t0, t1 = min(ts), max(ts)
    return (t0, t1) if t1 - t0 > eps else None


def share_edge(p: np.ndarray, q: np.ndarray, eps: float) -> bool:
    """Whether convex polygons ``p`` and ``q`` share a boundary segment longer than ``eps``."""
    for i in range(p.shape[0]):
        a, b = p[i], p[(i + 1) % p.shape[0]]
        d = b - a
        length = float(np.linalg.norm(d))
        if length <= eps:
            continue
        n = np.array([-d[1], d[0]]) / length
        on = np.abs((q - a) @ n) <= eps
        if on.sum() < 2:
            continue
        t = ((q[on] - a) @ d) / length  # positions of q's on-line vertices along the edge
        if min(t.max(), length) - max(t.min(), 0.0) > eps:
            return True
    return False

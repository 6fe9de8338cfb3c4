"""A fast lower bound on the region and boundary counts, by sampling activation patterns.

Every distinct activation pattern seen at a sample point inside the box is an activation
region, so the number of distinct patterns is a lower bound on the activation-region count by
construction; distinct output maps ``(J, o)`` bound the linear regions from below (each map
needs its own linear region), and distinct boundary lines bound the boundary pieces from below:
a region whose samples take both signs of ``f`` is crossed by its line ``g.x + h = 0`` inside
its interior. The bound reaches the exact count once every region holds a sample.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._checks import check_generator, check_positive_int
from ._geometry import MAP_RTOL, Box, as_box, group_rows, limit_error, normalised_hyperplanes
from .network import ReLUNetwork, binary_network


def _uniform_points(dom: Box, m: int, generator: torch.Generator | None) -> np.ndarray:
    u = torch.rand(m, dom.dim, generator=generator, dtype=torch.float64).numpy()
    return dom.low + u * (dom.high - dom.low)


def sampled_patterns(network: ReLUNetwork, dom: Box, n: int, seed: int = 0,
                     chunk: int = 65536) -> np.ndarray:
    """Distinct canonical activation patterns (see :meth:`ReLUNetwork.canonical_pattern`)
    among ``n`` uniform points of ``dom`` drawn with a fixed ``seed``, shape ``(k, n_hidden)``:
    ``k`` is a lower bound on the number of activation regions. Vectorised apart from the
    canonicalisation of the distinct patterns."""
    generator = torch.Generator().manual_seed(seed)
    keys: dict[bytes, np.ndarray] = {}
    for s in range(0, n, chunk):
        pats = network.patterns(_uniform_points(dom, min(chunk, n - s), generator))
        packed = np.packbits(pats, axis=1)
        _, first = np.unique(packed, axis=0, return_index=True)
        for i in first:
            keys.setdefault(packed[i].tobytes(), pats[i])
    atol = MAP_RTOL * network.scale
    canon = {}
    for pattern in keys.values():
        c = network.canonical_pattern(pattern, atol)
        canon.setdefault(c.tobytes(), c)
    return (np.array(list(canon.values())) if canon
            else np.zeros((0, network.n_hidden), dtype=bool))


def check_region_limit(network: ReLUNetwork, dom: Box, max_regions: int, n: int,
                       what: str) -> np.ndarray:
    """Raise :class:`ExactCountLimitError` when ``n`` uniform samples already show more than
    ``max_regions`` distinct activation patterns (a lower bound on the activation regions, so
    the exact method would exceed its limit later, after much longer). Returns the sampled
    patterns (seeds for the region search); ``n = 0`` skips the check."""
    if n == 0 or network.n_hidden == 0:
        return np.zeros((0, network.n_hidden), dtype=bool)
    pats = sampled_patterns(network, dom, n)
    if pats.shape[0] > max_regions:
        raise limit_error(f"{what}: {n} uniform samples already show {pats.shape[0]} distinct "
                          f"activation patterns (a lower bound on the activation regions), which",
                          "max_regions", max_regions)
    return pats


@dataclass(frozen=True)
class SampleBound:
    """Result of :func:`sample_lower_bound` (every count is a lower bound).

    Attributes
    ----------
    activation_regions : int
        Distinct canonical activation patterns among the samples (neurons identically zero on
        a region taken inactive, so round-off in ``z > 0`` cannot split one region in two).
    linear_regions : int
        Distinct affine output maps among the samples (to ``MAP_RTOL`` times the net's scale).
    boundary_regions : int
        Distinct patterns whose samples take both signs of ``f`` (regions the boundary crosses).
    boundary_pieces : int
        Distinct boundary hyperplanes among those regions.
    n : int
    seconds : float
    """

    activation_regions: int
    linear_regions: int
    boundary_regions: int
    boundary_pieces: int
    n: int
    seconds: float


def sample_lower_bound(net: Any, box: Any, n: int = 100_000, generator: Any = None, *,
                       logit: Any = None, chunk: int = 65536) -> SampleBound:
    """Lower bounds on the counts from ``n`` uniform samples in ``box``.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array
    n : int
        Number of uniform points (drawn with ``torch.rand`` in float64).
    generator : torch.Generator, optional
        Source of randomness; the same seed gives the same bound.
    logit : None, int or pair
        Which scalar ``f`` defines the boundary; see ``binary_network``.
    chunk : int
        Points per forward pass (bounds memory).
    """
    start = time.perf_counter()
    n = check_positive_int(n, "n")
    chunk = check_positive_int(chunk, "chunk")
    generator = check_generator(generator)
    network = binary_network(net, logit)
    dom = as_box(box, network.input_dim)
    seen: dict[bytes, list] = {}  # pattern -> [pattern, has f > 0, has f < 0]
    for s in range(0, n, chunk):
        m = min(chunk, n - s)
        x = _uniform_points(dom, m, generator)
        pats = network.patterns(x)
        f = network(x)[:, 0]
        packed = np.packbits(pats, axis=1) if pats.shape[1] else np.zeros((m, 1), np.uint8)
        keys, inv = np.unique(packed, axis=0, return_inverse=True)
        inv = inv.ravel()
        pos = np.bincount(inv, weights=(f > 0), minlength=len(keys)) > 0
        neg = np.bincount(inv, weights=(f < 0), minlength=len(keys)) > 0
        first = np.full(len(keys), -1)
        first[inv[::-1]] = np.arange(m)[::-1]
        for k, key in enumerate(keys):
            entry = seen.setdefault(key.tobytes(), [pats[first[k]], False, False])
            entry[1] |= bool(pos[k])
            entry[2] |= bool(neg[k])
    atol = MAP_RTOL * network.scale
    merged: dict[bytes, list] = {}  # canonical pattern -> [pattern, has f > 0, has f < 0]
    for pattern, pos, neg in seen.values():
        canon = network.canonical_pattern(pattern, atol)
        entry = merged.setdefault(canon.tobytes(), [canon, False, False])
        entry[1] |= pos
        entry[2] |= neg
    maps, planes = [], []
    for pattern, pos, neg in merged.values():
        _, _, jac, off = network.region_maps(pattern)
        maps.append(np.r_[jac[0], off[0]])
        if pos and neg:
            planes.append(normalised_hyperplanes(jac[:1], off[:1])[0])
    linear = int(np.unique(group_rows(np.array(maps), atol)).size)
    eps = dom.length_tol(None)
    d = network.input_dim
    pieces = (int(np.unique(group_rows(np.array(planes), np.r_[np.full(d, 1e-7), eps])).size)
              if planes else 0)
    return SampleBound(len(merged), linear, len(planes), pieces, n, time.perf_counter() - start)

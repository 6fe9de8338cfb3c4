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
from ._geometry import MAP_RTOL, as_box, group_rows, normalised_hyperplanes
from .network import binary_network


@dataclass(frozen=True)
class SampleBound:
    """Result of :func:`sample_lower_bound` (every count is a lower bound).

    Attributes
    ----------
    activation_regions : int
        Distinct activation patterns among the samples.
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
        u = torch.rand(m, network.input_dim, generator=generator, dtype=torch.float64).numpy()
        x = dom.low + u * (dom.high - dom.low)
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
    maps, planes = [], []
    for pattern, pos, neg in seen.values():
        _, _, jac, off = network.region_maps(pattern)
        maps.append(np.r_[jac[0], off[0]])
        if pos and neg:
            planes.append(normalised_hyperplanes(jac[:1], off[:1])[0])
    atol = MAP_RTOL * network.scale
    linear = int(np.unique(group_rows(np.array(maps), atol)).size)
    eps = dom.length_tol(None)
    d = network.input_dim
    pieces = (int(np.unique(group_rows(np.array(planes), np.r_[np.full(d, 1e-7), eps])).size)
              if planes else 0)
    return SampleBound(len(seen), linear, len(planes), pieces, n, time.perf_counter() - start)

"""Exact Lipschitz constant of a small ReLU network over a box.

On a convex box a continuous piecewise-affine map is Lipschitz with constant
``max_R ||J_R||_{p->p}`` over its activation regions ``R`` (the segment between two points
crosses finitely many regions, and on each the map moves by at most ``||J_R|| * length``); the
maximum is attained, so the value is exact. ``p = 2``: largest singular value; ``p = inf``:
largest absolute row sum; ``p = 1``: largest absolute column sum. Regions come from
:func:`labkit.tropical.regions.enumerate_regions` (Jordan & Dimakis 2020, arXiv:2003.01095, do
the same with mixed-integer programs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .regions import enumerate_regions


@dataclass(frozen=True)
class LipschitzResult:
    """Result of :func:`lipschitz_constant`.

    Attributes
    ----------
    value : float
        ``max_R ||J_R||`` over the activation regions in the box.
    argmax : ndarray, shape (d,)
        An interior point (Chebyshev centre) of a maximising region.
    norm : str
    regions : int
    n_lps : int
    seconds : float
    """

    value: float
    argmax: np.ndarray
    norm: str
    regions: int
    n_lps: int
    seconds: float


_NORMS = {2: 2, "2": 2, 1: 1, "1": 1, np.inf: np.inf, "inf": np.inf}


def lipschitz_constant(net: Any, box: Any, norm: Any = 2, *, tol: float | None = None,
                       max_regions: int = 20000, max_lps: int = 500000,
                       progress: bool = False) -> LipschitzResult:
    """Exact Lipschitz constant of ``net`` on ``box`` for the ``norm`` on input and output.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array
    norm : {2, 1, inf, "2", "1", "inf"}
        The vector norm used on both sides; the constant is the induced operator norm.
    tol, max_regions, max_lps
        As in :func:`labkit.tropical.regions.enumerate_regions`.
    progress : bool
        Show a counter of activation regions found on stderr (default off; the result is
        identical either way).
    """
    if isinstance(norm, bool) or norm not in _NORMS:
        raise ValueError(f"norm must be one of 1, 2, inf (or '1', '2', 'inf'), got {norm!r}")
    start = time.perf_counter()
    p = _NORMS[norm]
    enum = enumerate_regions(net, box, tol=tol, max_regions=max_regions, max_lps=max_lps,
                             progress=progress)
    jacs = np.stack([r.jacobian for r in enum.regions])  # (regions, out, d)
    values = np.linalg.norm(jacs, ord=p, axis=(1, 2))
    best = int(np.argmax(values))
    return LipschitzResult(float(values[best]), enum.regions[best].center.copy(), str(norm),
                           enum.n_activation_regions, enum.n_lps, time.perf_counter() - start)

"""``count_linear_regions``: the exact number of linear regions, by LPs or by the tropical form.

Both methods return the number of **linear regions** (maximal connected affine pieces of the
network in the box, the quantity of Zhang et al. 2018 and Piwek et al. 2023) and their own
finer count: activation regions (``"lp"``) or cells of the common refinement of ``F`` and ``G``
(``"tropical"``). See :mod:`labkit.tropical.regions` for the definitions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ._geometry import as_box
from .network import as_network, binary_network
from .regions import enumerate_regions
from .tropical_count import tropical_refinement


@dataclass(frozen=True)
class RegionCount:
    """Result of :func:`count_linear_regions`.

    Attributes
    ----------
    linear_regions : int
        Maximal connected sets where the network is one affine map (compare across methods).
    activation_regions : int or None
        Distinct activation patterns with full-dimensional regions (``"lp"`` only).
    cells : int or None
        Cells ``P_i ∩ Q_j`` of the tropical refinement (``"tropical"`` only).
    method : str
    n_lps : int
        Linear programs solved (HiGHS).
    seconds : float
    tol : float
        Length tolerance used (input units).
    """

    linear_regions: int
    activation_regions: int | None
    cells: int | None
    method: str
    n_lps: int
    seconds: float
    tol: float


def count_linear_regions(net: Any, box: Any, method: str = "lp", *, logit: Any = None,
                         tol: float | None = None, max_regions: int = 20000,
                         max_lps: int = 500000, max_monomials: int = 20000,
                         max_clips: int = 2_000_000, check_samples: int = 100_000,
                         progress: bool = False) -> RegionCount:
    """Exact number of linear regions of a ReLU network inside ``box``.

    Which map is counted: the scalar ``f`` of :func:`binary_network` whenever ``logit`` is
    given or the network has 1 or 2 outputs (2 outputs: ``f = out[1] - out[0]``, the binary
    classifier's logit difference), by both methods. A network with more than 2 outputs and no
    ``logit``: ``"lp"`` counts the regions of the whole output vector (a region ends where any
    output bends) and ``"tropical"`` raises ``ValueError``.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array
        ``r`` for ``[-r, r]^d``, ``(low, high)``, or a ``(d, 2)`` array.
    method : {"lp", "tropical"}
        ``"lp"``: breadth-first enumeration of activation regions with Chebyshev-ball LPs
        (any input dimension); ``"tropical"``: exact polygon geometry of ``F - G`` (input
        dimension 2, scalar ``f``).
    logit : None, int or pair
        The scalar ``f`` to count (see ``binary_network``); see above for the default.
    tol : float, optional
        Length tolerance (default ``1e-6 *`` box diameter); any positive real number.
    max_regions, max_lps, max_monomials, max_clips : int
        Positive limits: activation regions (``"lp"``) or tropical cells, LPs, monomials of an
        intermediate tropical polynomial, polygon clips of the tropical method (its work
        budget). Exceeding one raises ``ExactCountLimitError`` (a ``ValueError``) naming the
        limit and suggesting ``sample_lower_bound``.
    check_samples : int
        Both methods first compare the distinct activation patterns of this many uniform
        points (a lower bound on the activation regions) with ``max_regions`` and raise at
        once when they exceed it; ``0`` skips the check.
    progress : bool
        Show a progress bar on stderr (default off; results are identical either way):
        ``"lp"`` a counter of activation regions found (the total is not known in advance),
        ``"tropical"`` a bar over the monomials of ``G`` whose cells are being intersected.

    Examples
    --------
    Three lines in general position cut a large square into ``1 + 3 + 3 = 7`` regions:

    >>> import numpy as np
    >>> w1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); b1 = np.array([0.0, 0.0, -1.0])
    >>> count_linear_regions([(w1, b1), (np.ones((1, 3)), np.zeros(1))], 10.0).linear_regions
    7
    """
    if method not in ("lp", "tropical"):
        raise ValueError(f"method must be 'lp' or 'tropical', got {method!r}")
    start = time.perf_counter()
    network = as_network(net)
    if logit is not None or network.output_dim <= 2:
        network = binary_network(network, logit)
    elif method == "tropical":
        raise ValueError(f"method='tropical' counts the regions of a scalar f, and net has "
                         f"{network.output_dim} outputs: pass logit=k or logit=(i, j), or use "
                         f"method='lp' for the regions of the whole output vector")
    dom = as_box(box, network.input_dim)
    eps = dom.length_tol(tol)
    if method == "lp":
        enum = enumerate_regions(network, dom, tol=eps, max_regions=max_regions,
                                 max_lps=max_lps, check_samples=check_samples,
                                 progress=progress)
        return RegionCount(enum.n_linear_regions, enum.n_activation_regions, None, "lp",
                           enum.n_lps, time.perf_counter() - start, enum.tol)
    form, cells = tropical_refinement(network, dom, eps, max_regions=max_regions,
                                      max_monomials=max_monomials, max_clips=max_clips,
                                      check_samples=check_samples, progress=progress)
    return RegionCount(cells.n_linear_regions, None, len(cells.polygons), "tropical", form.n_lps,
                       time.perf_counter() - start, eps)

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
from .network import binary_network
from .rational import tropical_form
from .regions import enumerate_regions
from .tropical_count import tropical_cells


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
                         max_lps: int = 500000, max_monomials: int = 20000) -> RegionCount:
    """Exact number of linear regions of a ReLU network inside ``box``.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
    box : float, pair or array
        ``r`` for ``[-r, r]^d``, ``(low, high)``, or a ``(d, 2)`` array.
    method : {"lp", "tropical"}
        ``"lp"``: breadth-first enumeration of activation regions with Chebyshev-ball LPs
        (any input dimension, any number of outputs); ``"tropical"``: exact polygon geometry of
        ``F - G`` (input dimension 2, scalar ``f`` chosen by ``logit``).
    logit : None, int or pair
        Only for ``"tropical"`` (which needs a scalar output); see ``binary_network``.
    tol : float, optional
        Length tolerance (default ``1e-6 *`` box diameter).
    max_regions, max_lps, max_monomials : int
        Limits; exceeding one raises ``ExactCountLimitError`` (a ``ValueError``) naming the
        limit and suggesting ``sample_lower_bound``.

    Examples
    --------
    Three lines in general position cut a large square into ``1 + 3 + 3 = 7`` regions:

    >>> w1 = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]); b1 = np.array([0.0, 0.0, -1.0])
    >>> count_linear_regions([(w1, b1), (np.ones((1, 3)), np.zeros(1))], 10.0).linear_regions
    7
    """
    if method not in ("lp", "tropical"):
        raise ValueError(f"method must be 'lp' or 'tropical', got {method!r}")
    start = time.perf_counter()
    if method == "lp":
        enum = enumerate_regions(net, box, tol=tol, max_regions=max_regions, max_lps=max_lps)
        return RegionCount(enum.n_linear_regions, enum.n_activation_regions, None, "lp",
                           enum.n_lps, time.perf_counter() - start, enum.tol)
    network = binary_network(net, logit)
    dom = as_box(box, network.input_dim)
    eps = dom.length_tol(tol)
    form = tropical_form(network, dom, tol=eps, max_monomials=max_monomials)
    cells = tropical_cells(form, dom, eps, max_regions)
    return RegionCount(cells.n_linear_regions, None, len(cells.polygons), "tropical", form.n_lps,
                       time.perf_counter() - start, eps)

"""The tropical rational function ``f = F - G`` of a ReLU network.

Zhang, Naitzat & Lim (2018), "Tropical geometry of deep neural networks", arXiv:1805.07091,
Prop. 5.1 / Thm. 5.4: a ReLU MLP is a difference of two max-plus polynomials. Write the output
of layer ``l-1`` as ``F_{l-1} - G_{l-1}`` (vectors of polynomials; the input is ``F_0 = x``,
``G_0 = 0``) and split ``W_l = W_l^+ - W_l^-`` into positive and negative parts. Then

    H_l = W_l^+ F_{l-1} + W_l^- G_{l-1} + b_l,     G_l = W_l^+ G_{l-1} + W_l^- F_{l-1},
    F_l = max(H_l, G_l)   (hidden layers: relu(H - G) = max(H, G) - G),   F_L = H_L (output).

Classical ``+`` of polynomials is the tropical product (Minkowski sum of monomials), a
non-negative multiple is a tropical power, and ``max`` is the tropical sum (union).
Monomials are pruned after every product (inside the box when one is given), so the sizes stay
those of the regions actually present.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import check_positive_int
from ._geometry import Box, LPCounter, as_box, clip_counter
from .network import ReLUNetwork, binary_network
from .polynomial import MaxPlusPolynomial, monomial_cells_2d


@dataclass(frozen=True)
class TropicalRational:
    """``f(x) = F(x) - G(x)`` with max-plus polynomials ``F`` and ``G``.

    Attributes
    ----------
    F, G : MaxPlusPolynomial
    network : ReLUNetwork
        The scalar network it represents (after :func:`binary_network`).
    box : Box or None
        Pruning domain: ``F - G`` equals the network inside ``box`` (everywhere if ``None``).
    n_lps : int
        LPs solved while pruning (0 in 2-D, where pruning clips polygons).
    seconds : float
        Construction time.
    n_clips : int
        Polygon clipping operations used (the work counted against ``max_clips``).
    """

    F: MaxPlusPolynomial
    G: MaxPlusPolynomial
    network: ReLUNetwork
    box: Box | None
    n_lps: int
    seconds: float
    n_clips: int = 0

    def evaluate(self, x: Any) -> Any:
        """``F(x) - G(x)`` at points ``x`` of shape ``(n, d)`` (tensor in, tensor out)."""
        return self.F.evaluate(x) - self.G.evaluate(x)

    __call__ = evaluate


def _product(p: MaxPlusPolynomial, q: MaxPlusPolynomial, box: Box | None, eps: float | None,
             prune: Any, clips: LPCounter) -> MaxPlusPolynomial:
    """Pruned tropical product ``p ⊙ q``. In 2-D with a box, monomial ``(i, j)`` of the product
    is maximal exactly on ``P_i ∩ Q_j`` (the argmax of a sum is the pair of argmaxes), so only
    pairs whose cells' bounding boxes overlap are formed: ``O(m_p + m_q)`` candidates instead of
    ``m_p m_q``. The final prune decides exactly."""
    if box is None or p.dim != 2 or p.n_monomials * q.n_monomials <= 64:
        return prune(p.times(q))
    cp, cq = monomial_cells_2d(p, box, eps, clips), monomial_cells_2d(q, box, eps, clips)
    ip = [i for i, c in enumerate(cp) if c.shape[0]]
    iq = [j for j, c in enumerate(cq) if c.shape[0]]
    lo_p = np.array([cp[i].min(axis=0) for i in ip]) - eps
    hi_p = np.array([cp[i].max(axis=0) for i in ip]) + eps
    lo_q = np.array([cq[j].min(axis=0) for j in iq])
    hi_q = np.array([cq[j].max(axis=0) for j in iq])
    hit = ((lo_p[:, None, :] <= hi_q[None, :, :]) & (hi_p[:, None, :] >= lo_q[None, :, :])).all(-1)
    a, b = np.nonzero(hit)
    a, b = np.asarray(ip)[a], np.asarray(iq)[b]
    return prune(MaxPlusPolynomial(p.coefficients[a] + q.coefficients[b],
                                   p.exponents[a] + q.exponents[b]))


def _combine(fs: list[MaxPlusPolynomial], gs: list[MaxPlusPolynomial], w: np.ndarray,
             bias: float, times: Any) -> tuple[MaxPlusPolynomial, MaxPlusPolynomial]:
    """``(W^+ F + W^- G + b, W^+ G + W^- F)`` for one neuron with weight row ``w``."""
    dim = fs[0].dim
    h, g = MaxPlusPolynomial.constant(bias, dim), MaxPlusPolynomial.constant(0.0, dim)
    for wk, fk, gk in zip(w, fs, gs):
        if wk > 0:
            h, g = times(h, fk.scaled(wk)), times(g, gk.scaled(wk))
        elif wk < 0:
            h, g = times(h, gk.scaled(-wk)), times(g, fk.scaled(-wk))
    return h, g


def tropical_form(net: Any, box: Any = None, *, logit: Any = None, tol: float | None = None,
                  max_monomials: int = 20000, max_clips: int = 2_000_000) -> TropicalRational:
    """Tropical rational form ``F - G`` of a ReLU network with a scalar output.

    Parameters
    ----------
    net : torch.nn.Sequential, list of (W, b) or ReLUNetwork
        See :func:`labkit.tropical.network.as_network`.
    box : float, pair or array, optional
        Prune monomials that are never maximal inside this box (see
        :func:`labkit.tropical._geometry.as_box`); ``None`` prunes on all of ``R^d`` (one LP per
        monomial, slower, and the polynomials are larger).
    logit : None, int or pair
        Which scalar to represent; see :func:`labkit.tropical.network.binary_network`.
    tol : float, optional
        Length tolerance of pruning (default ``1e-6 *`` box diameter).
    max_monomials : int
        Raise :class:`ExactCountLimitError` when an intermediate polynomial has more monomials.
    max_clips : int
        Work budget of the 2-D construction: raise :class:`ExactCountLimitError` after this
        many polygon clipping operations (each ~30-100 us on one core, so the default stops a
        too-large network after a few minutes; a 2-12-12-12-1 net needs ~4e5).

    Returns
    -------
    TropicalRational
        with ``.F``, ``.G``, ``.evaluate(x)``.

    Examples
    --------
    >>> form = tropical_form([(np.array([[1.0, -1.0]]), np.array([0.5])),
    ...                       (np.array([[2.0]]), np.array([-1.0]))], box=2.0)
    >>> float(form.evaluate(np.array([[1.0, 0.0]]))[0])   # 2 relu(1.5) - 1
    2.0
    """
    start = time.perf_counter()
    network = binary_network(net, logit)
    dom = None if box is None else as_box(box, network.input_dim)
    max_monomials = check_positive_int(max_monomials, "max_monomials")
    counter = LPCounter()
    clips = clip_counter(check_positive_int(max_clips, "max_clips"))

    def prune(p: MaxPlusPolynomial) -> MaxPlusPolynomial:
        return p.pruned(dom, tol=tol, counter=counter, max_monomials=max_monomials, clips=clips)

    def times(p: MaxPlusPolynomial, q: MaxPlusPolynomial) -> MaxPlusPolynomial:
        return _product(p, q, dom, None if dom is None else dom.length_tol(tol), prune, clips)

    d = network.input_dim
    fs = [MaxPlusPolynomial.coordinate(i, d) for i in range(d)]
    gs = [MaxPlusPolynomial.constant(0.0, d) for _ in range(d)]
    n_layers = len(network.weights)
    for layer, (w, b) in enumerate(zip(network.weights, network.biases)):
        new_f, new_g = [], []
        for row, bias in zip(w, b):
            h, g = _combine(fs, gs, row, float(bias), times)
            new_f.append(prune(h.plus(g)) if layer < n_layers - 1 else h)
            new_g.append(g)
        fs, gs = new_f, new_g
    return TropicalRational(fs[0], gs[0], network, dom, counter.n, time.perf_counter() - start,
                            clips.n)

"""k-nearest-neighbour precision and recall of a generative model (Kynkäänniemi et al. 2019)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .._checks import check_positive_int
from .._intervals import _check_level, wilson_interval
from ._samples import CHUNK_ENTRIES, as_sample_pair, centred_float64
from .estimate import Estimate



@dataclass(frozen=True)
class PrecisionRecall:
    """Improved precision and recall, each an :class:`Estimate` with a Wilson interval."""

    precision: Estimate
    recall: Estimate


def knn_radii(points: Tensor, k: int) -> Tensor:
    """Distance from each point to its ``k``-th nearest neighbour among the others, shape (n,).

    Computed in row blocks of ``torch.cdist``; the point itself (distance 0) is skipped by taking
    the ``(k+1)``-th smallest distance of its row, as in the authors' code.
    """
    n = points.shape[0]
    rows = max(1, CHUNK_ENTRIES // n)
    return torch.cat([torch.cdist(points[s:s + rows], points).kthvalue(k + 1, dim=1).values
                      for s in range(0, n, rows)])  # loop over row blocks, not samples


def in_manifold(queries: Tensor, points: Tensor, radii: Tensor) -> Tensor:
    """Whether each query lies in ``union_i B(points_i, radii_i)`` (closed balls), shape (q,)."""
    rows = max(1, CHUNK_ENTRIES // points.shape[0])
    return torch.cat([(torch.cdist(queries[s:s + rows], points) <= radii).any(dim=1)
                      for s in range(0, queries.shape[0], rows)])


def _wilson(hits: int, n: int, level: float, what: str) -> Estimate:
    """``hits / n`` with its Wilson interval (:func:`labkit._intervals.wilson_interval`)."""
    p = hits / n
    return Estimate(p, wilson_interval(p, n, level), n,
                    f"{what}: fraction of {n} points inside the k-NN manifold, Wilson {level:g} "
                    f"interval conditional on the manifold", math.sqrt(p * (1 - p) / n))


def precision_recall(real: Any, generated: Any, *, k: int = 3,
                     level: float = 0.95) -> PrecisionRecall:
    r"""Improved precision and recall (Kynkäänniemi et al. 2019, arXiv:1904.06991).

    Each sample set ``Phi`` estimates its support by the union of closed balls around its
    points, with radius the distance to the ``k``-th nearest other point:
    ``manifold(Phi) = union_{phi in Phi} B(phi, |phi - NN_k(phi)|)``. Then

    - ``precision = (1/|G|) sum_{g in G} 1[g in manifold(R)]`` (fidelity: are generated points
      realistic?),
    - ``recall = (1/|R|) sum_{r in R} 1[r in manifold(G)]`` (diversity: is the real support
      covered?).

    A dropped mode lowers recall; generated points off the real support lower precision.
    Both are biased functions of the sample sizes and of ``k`` (larger ``k`` inflates the balls
    and both numbers); compare models only at equal ``|R|``, ``|G|`` and ``k``.

    Parameters
    ----------
    real : Tensor or array_like, shape (n_r, d)
        Samples of the reference distribution (features, in the paper: VGG-16 embeddings).
    generated : Tensor or array_like, shape (n_g, d)
        Model samples, same ``d``.
    k : int, optional
        Neighbour rank of the radii, ``1 <= k < min(n_r, n_g)``; 3 as in the paper.
    level : float, optional
        Coverage of the intervals, 0.95 by default.

    Returns
    -------
    PrecisionRecall
        ``precision`` and ``recall`` as :class:`Estimate`. Their intervals are Wilson score
        intervals for a binomial proportion, *conditional on the manifold*: given the real set,
        the generated points fall in ``manifold(R)`` independently with one probability (and
        vice versa for recall). They ignore the randomness of the manifold itself, so they are
        too narrow for the population precision/recall; ``stderr = sqrt(p (1 - p) / n)``.

    Notes
    -----
    Distances come from ``torch.cdist`` in row blocks of about 4e6 entries, so memory is
    ``O(4e6 + n_r + n_g)``. Membership uses ``<=`` as in the authors' code.

    References
    ----------
    Kynkäänniemi, Karras, Laine, Lehtinen, Aila (2019), "Improved precision and recall metric
    for assessing generative models", NeurIPS (arXiv:1904.06991); peer:
    github.com/kynkaat/improved-precision-and-recall-metric.
    Wilson (1927), "Probable inference, the law of succession, and statistical inference",
    JASA 22.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> real = torch.randn(1000, 2, generator=g, dtype=torch.float64)
    >>> pr = precision_recall(real, real[:500] + 5.0)
    >>> pr.precision.value < 0.1
    True
    """
    level = _check_level(level)
    xs, ys = as_sample_pair(real, generated, minimum=2, names=("real", "generated"))
    xs, ys = centred_float64(xs, ys)
    k = check_positive_int(k, "k")
    if k >= min(xs.shape[0], ys.shape[0]):
        raise ValueError(f"k must be < the size of both sets (the k-th neighbour among the "
                         f"others), got k={k} with {xs.shape[0]} real and {ys.shape[0]} "
                         f"generated points; lower k or pass more samples")
    precision_hits = int(in_manifold(ys, xs, knn_radii(xs, k)).sum())
    recall_hits = int(in_manifold(xs, ys, knn_radii(ys, k)).sum())
    return PrecisionRecall(
        _wilson(precision_hits, ys.shape[0], level, f"k-NN precision (k={k})"),
        _wilson(recall_hits, xs.shape[0], level, f"k-NN recall (k={k})"))

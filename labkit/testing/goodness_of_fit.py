"""Kernel Stein discrepancy: a goodness-of-fit test that needs only the score of the model.

Given samples ``x_1..x_n`` of an unknown distribution ``q`` and the score ``s = grad log p`` of a
model ``p`` (no normalising constant needed), the kernel Stein discrepancy

    KSD^2(q, p) = E_{x, y ~ q} [u_p(x, y)],
    u_p(x, y) = s(x)^T s(y) k(x, y) + s(x)^T grad_y k(x, y) + s(y)^T grad_x k(x, y)
                + tr(grad_x grad_y k(x, y)),

is zero if and only if ``q = p`` (for a characteristic kernel and mild tail conditions) and is
estimated by the V-statistic ``(1/n^2) sum_{i,j} u_p(x_i, x_j)``. Its null distribution is
approximated by the wild bootstrap with Rademacher weights ``W``,
``(1/n^2) sum_{i,j} W_i W_j u_p(x_i, x_j)``, which gives a p-value.

References
----------
Q. Liu, J. Lee, M. Jordan. A kernelized Stein discrepancy for goodness-of-fit tests. ICML 2016,
arXiv:1602.03253.
K. Chwialkowski, H. Strathmann, A. Gretton. A kernel test of goodness of fit. ICML 2016,
arXiv:1602.02964.
J. Gorham, L. Mackey. Measuring sample quality with kernels. ICML 2017, arXiv:1703.01717
(the IMQ kernel, whose KSD also detects non-convergence in the tails).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Union

import torch
from torch import Tensor

from .._checks import check_generator, check_points, check_positive_int

ScoreLike = Union[Callable[[Tensor], Tensor], Tensor]

_KERNELS = ("imq", "rbf")


@dataclass(frozen=True)
class KSDResult:
    """Outcome of :func:`ksd_test`.

    Attributes
    ----------
    statistic : float
        The V-statistic estimate of ``KSD^2`` (``>= 0`` up to rounding), in units of
        score^2 * kernel.
    p_value : float
        Wild-bootstrap p-value, ``(1 + #{bootstrap >= statistic}) / (1 + n_bootstrap)``; its
        resolution is ``1 / (1 + n_bootstrap)``.
    n : int
        Number of samples.
    bandwidth : float
        Kernel length scale ``ell`` that was used.
    kernel : str
        ``"imq"`` or ``"rbf"``.
    """

    statistic: float
    p_value: float
    n: int
    bandwidth: float = float("nan")
    kernel: str = "imq"


def stein_kernel_matrix(samples: Tensor, scores: Tensor, *, kernel: str = "imq",
                        bandwidth: float, beta: float = -0.5) -> Tensor:
    """The Stein kernel ``u_p(x_i, x_j)`` for all pairs of samples.

    With ``r = x - y`` and length scale ``ell``:

    - IMQ, ``k = q^beta`` with ``q = 1 + |r|^2 / ell^2`` and ``-1 < beta < 0``:
      ``u = k s_x.s_y - (2 beta / ell^2) q^(beta-1) (s_x - s_y).r
      - (4 beta (beta-1) / ell^4) q^(beta-2) |r|^2 - (2 beta d / ell^2) q^(beta-1)``;
    - RBF, ``k = exp(-|r|^2 / (2 ell^2))``:
      ``u = k [s_x.s_y + (s_x - s_y).r / ell^2 + d / ell^2 - |r|^2 / ell^4]``.

    Parameters
    ----------
    samples : Tensor of shape ``(n, d)``
    scores : Tensor of shape ``(n, d)``
        ``grad log p`` at the samples.
    kernel : {"imq", "rbf"}
    bandwidth : float
        Length scale ``ell > 0``.
    beta : float
        IMQ exponent in ``(-1, 0)``; ignored for RBF.

    Returns
    -------
    Tensor of shape ``(n, n)``, symmetric, in the samples' dtype and device.
    """
    x = samples - samples.mean(dim=0)  # u depends on x - y only; centring limits cancellation
    s = scores
    d = x.shape[1]
    ell2 = float(bandwidth) ** 2
    sq = (x * x).sum(dim=1)
    r2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    a = (s * x).sum(dim=1)
    sx = s @ x.T  # sx[i, j] = s_i . x_j
    # (s_i - s_j) . (x_i - x_j) without forming the (n, n, d) difference tensor.
    cross = a[:, None] + a[None, :] - sx - sx.T
    ss = s @ s.T
    if kernel == "rbf":
        k = torch.exp(-r2 / (2.0 * ell2))
        return k * (ss + cross / ell2 + d / ell2 - r2 / ell2 ** 2)
    q = 1.0 + r2 / ell2
    k = q ** beta
    return (k * ss - (2.0 * beta / ell2) * q ** (beta - 1.0) * cross
            - (4.0 * beta * (beta - 1.0) / ell2 ** 2) * q ** (beta - 2.0) * r2
            - (2.0 * beta * d / ell2) * q ** (beta - 1.0))


def median_bandwidth(samples: Tensor) -> float:
    """Median heuristic for the kernel length scale: ``median_{i < j} |x_i - x_j|``.

    Parameters
    ----------
    samples : Tensor of shape ``(n, d)``, ``n >= 2``

    Returns
    -------
    float
        The median pairwise Euclidean distance.

    Raises
    ------
    ValueError
        When the median is 0 (most samples coincide), so there is no scale to take.
    """
    x = samples - samples.mean(dim=0)
    iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
    sq = (x * x).sum(dim=1)
    r2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    med = float(r2[iu[0], iu[1]].median().sqrt())
    if not med > 0.0:
        raise ValueError("samples must not all coincide: the median pairwise distance is 0, "
                         "so the kernel has no length scale (pass bandwidth=...)")
    return med


def ksd_test(samples: Tensor, score_fn: ScoreLike, *, kernel: str = "imq",
             bandwidth: float | None = None, beta: float = -0.5, n_bootstrap: int = 1000,
             generator: torch.Generator | None = None) -> KSDResult:
    """Kernel Stein discrepancy test of ``H0: samples ~ p`` given only the score of ``p``.

    The statistic is the V-statistic ``KSD_V = (1/n^2) sum_{i,j} u_p(x_i, x_j)`` (see
    :func:`stein_kernel_matrix`); the null distribution is simulated by the wild bootstrap
    ``B_b = (1/n^2) sum_{i,j} W_bi W_bj u_p(x_i, x_j)`` with Rademacher ``W`` (Chwialkowski et al.
    2016, Sec. 2.2, for independent samples), and ``p = (1 + #{B_b >= KSD_V}) / (1 + n_bootstrap)``.
    Under ``H0`` the p-value is asymptotically uniform, so a test at level ``alpha`` falsely rejects
    with probability about ``alpha`` (checked in labkit's own tests).

    The samples must be independent: for correlated samples (a Markov chain) the plain wild
    bootstrap is anti-conservative.

    Parameters
    ----------
    samples : Tensor of shape ``(n, d)``
        Independent samples, ``n >= 2``; computation follows their dtype and device. Memory and
        time are ``O(n^2)`` and ``O(n_bootstrap * n^2)``: ``n`` of a few thousand at most.
    score_fn : callable ``(n, d) -> (n, d)`` or Tensor of shape ``(n, d)``
        The model's score ``grad log p``, or its values at ``samples``.
    kernel : {"imq", "rbf"}
        Inverse multiquadric ``(1 + |r|^2/ell^2)^beta`` (default; its KSD also controls the tails,
        Gorham & Mackey 2017) or Gaussian ``exp(-|r|^2 / (2 ell^2))``.
    bandwidth : float, optional
        Length scale ``ell``; by default the median pairwise distance of ``samples``.
    beta : float
        IMQ exponent, in ``(-1, 0)``.
    n_bootstrap : int
        Number of wild-bootstrap replicates.
    generator : torch.Generator, optional
        Source of the Rademacher weights (on the samples' device).

    Returns
    -------
    KSDResult
        ``statistic``, ``p_value``, ``n`` (and the ``bandwidth`` and ``kernel`` used).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(300, 2, generator=g, dtype=torch.float64)
    >>> ksd_test(x, lambda y: -y, generator=g).p_value > 1e-3          # right score
    True
    >>> ksd_test(x, lambda y: -(y - 1.0), generator=g).p_value < 1e-3  # N(1, I): wrong
    True
    """
    if not isinstance(samples, Tensor):
        raise TypeError(f"samples must be a torch.Tensor of shape (n, d), "
                        f"got {type(samples).__name__}")
    if samples.ndim != 2:
        raise ValueError(f"samples must have shape (n, d), got {tuple(samples.shape)}")
    x = check_points(samples, samples.shape[1], "samples")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"samples must have at least 2 rows, got {n}")
    if kernel not in _KERNELS:
        raise ValueError(f"kernel must be one of {_KERNELS}, got {kernel!r}")
    if not -1.0 < beta < 0.0:
        raise ValueError(f"beta must lie in (-1, 0), got {beta}")
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap")
    check_generator(generator)
    s = score_fn if isinstance(score_fn, Tensor) else _call_score(score_fn, x)
    if s.shape != x.shape:
        raise ValueError(f"score_fn must return shape {tuple(x.shape)}, got {tuple(s.shape)}")
    s = s.to(dtype=x.dtype, device=x.device)
    if not bool(torch.isfinite(s).all()):
        raise ValueError("score_fn returned NaN or inf at some samples")
    if bandwidth is None:
        bandwidth = median_bandwidth(x)
    elif not (isinstance(bandwidth, (int, float)) and math.isfinite(bandwidth) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a finite float > 0, got {bandwidth!r}")

    u = stein_kernel_matrix(x, s, kernel=kernel, bandwidth=float(bandwidth), beta=beta)
    stat = float(u.sum()) / n ** 2
    w = torch.randint(0, 2, (n_bootstrap, n), generator=generator, device=x.device).to(x.dtype)
    w = 2.0 * w - 1.0
    boot = ((w @ u) * w).sum(dim=1) / n ** 2  # (n_bootstrap,): W_b^T U W_b / n^2
    p = (1.0 + float((boot >= stat).sum())) / (1.0 + n_bootstrap)
    return KSDResult(statistic=stat, p_value=p, n=n, bandwidth=float(bandwidth), kernel=kernel)


def _call_score(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    if not callable(score_fn):
        raise TypeError(f"score_fn must be callable or a Tensor, got {type(score_fn).__name__}")
    out = score_fn(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"score_fn must return a Tensor, got {type(out).__name__}")
    return out

"""The empirical distribution of a point cloud and its memorising optimal denoiser.

``p = (1/N) sum_i delta(y_i)`` noises to the mixture ``p_sigma = (1/N) sum_i N(y_i, sigma^2 I)``,
whose denoiser ``D(x, sigma) = sum_i w_i(x) y_i`` with ``w = softmax_i(-|x - y_i|^2 / (2 sigma^2))``
reproduces the training set at small sigma: the "memorising" optimum of denoising score matching
on a finite sample (Karras et al. 2022; Kadkhodaie et al. 2024, arXiv:2310.02557).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .._checks import DEFAULT_DTYPE, as_float_tensor
from .base import Target

BLOCK_BYTES = 32 * 2 ** 20


class Empirical(Target):
    """Uniform law on points ``y_1..y_N`` in R^d, noised: ``(1/N) sum_i N(y_i, sigma^2 I)``.

    ``log p_sigma(x) = logsumexp_i(-|x - y_i|^2 / (2 sigma^2)) - log N - (d/2) log(2 pi sigma^2)``;
    the denoiser is the softmax-weighted mean of the points with the same logits.

    Squared distances come from one matmul, ``|y_i|^2 - 2 x.y_i`` (points centred on their mean to
    shrink round-off), and are taken relative to the nearest point ``j``, whose distance
    ``|x - y_j|^2`` is then computed directly. So the leading term of ``log p_sigma`` is exact at
    any sigma, and at small sigma the denoiser returns the nearest point exactly (its weight is 1
    and the others underflow to 0).

    Parameters
    ----------
    points : array_like of shape ``(N, d)``
        Finite points; stored in float64 (``N >= 1``, ``d >= 1``).

    Attributes
    ----------
    points : Tensor of shape ``(N, d)``, float64
    dim : int
    has_density : bool
        ``False``: ``log_prob`` and ``score`` need ``sigma > 0``.
    chunk_size : int
        Rows per block, so that an ``(m, N)`` float64 block of logits takes about 32 MB.

    References
    ----------
    T. Karras, M. Aittala, T. Aila, S. Laine, "Elucidating the design space of diffusion-based
    generative models", NeurIPS 2022, arXiv:2206.00364 (the ideal denoiser, Sec. 3 and App. B.3).

    Examples
    --------
    >>> import torch, labkit
    >>> cloud = labkit.Empirical(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    >>> cloud.denoise(torch.tensor([[2.9, 4.1]], dtype=torch.float64), 1e-3)
    tensor([[3., 4.]], dtype=torch.float64)
    """

    has_density = False

    def __init__(self, points: Any) -> None:
        super().__init__()
        y = as_float_tensor(points, "points", dtype=DEFAULT_DTYPE)
        if y.ndim != 2 or y.shape[0] < 1 or y.shape[1] < 1:
            raise ValueError(f"points must have shape (N, d) with N >= 1 and d >= 1, "
                             f"got {tuple(y.shape)}")
        self.dim = int(y.shape[1])
        self.chunk_size = max(1, BLOCK_BYTES // (8 * int(y.shape[0])))
        centre = y.mean(0)
        centred = y - centre
        self._register(points=y.clone(), centre=centre, centred=centred,
                       half_sq_norms=0.5 * centred.square().sum(-1))

    @property
    def points(self) -> Tensor:
        """The ``(N, d)`` float64 points."""
        return self._buffers["points"]

    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        p = self._params(like)["points"]
        index = torch.randint(p.shape[0], (n,), generator=generator, device=like.device)
        return p[index]

    def _relative_logits(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``-(|x - y_i|^2 - |x - y_j|^2) / (2 sigma^2) <= 0``, nearest index ``j``."""
        p = self._params(x)
        # |x - y_i|^2 / 2 = |x|^2 / 2 + (|y_i|^2 / 2 - x.y_i); the first term is shared by all i.
        half_sq = p["half_sq_norms"] - (x - p["centre"]) @ p["centred"].T           # (m, N)
        nearest = half_sq.argmin(-1)
        gap = half_sq - half_sq.gather(-1, nearest[:, None])
        return -gap / sigma[:, None] ** 2, nearest

    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        logits, nearest = self._relative_logits(x, sigma)
        var = sigma ** 2
        nearest_sq = (x - self._params(x)["points"][nearest]).square().sum(-1)
        return (torch.logsumexp(logits, -1) - nearest_sq / (2 * var)
                - math.log(logits.shape[-1]) - 0.5 * self.dim * torch.log(2 * math.pi * var))

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        logits, _ = self._relative_logits(x, sigma)
        return torch.softmax(logits, -1) @ self._params(x)["points"]

    def __repr__(self) -> str:
        return f"Empirical(N={self.points.shape[0]}, dim={self.dim})"

"""A Fokker-Planck penalty for training denoisers: the scale-free squared score FP residual.

For a denoiser ``D(x, sigma)`` the implied score is ``s = (D(x, sigma) - x) / sigma^2``
(Tweedie). The exact score of any data distribution obeys the score Fokker-Planck equation of
the EDM/variance-exploding process ``x = x0 + sigma eps``
(:func:`labkit.fokker_planck.fp_residual`)::

    r(x, sigma) = d s / d sigma - sigma grad( div s + |s|^2 ) = 0,

so ``|r|^2`` at the training points is a regulariser that vanishes at the truth. Lai et al.
(FP-Diffusion, arXiv:2210.04296) add it to the denoising score-matching loss; Deveney,
Stanczuk, Kreusser, Budd and Schoenlieb (arXiv:2311.15996) show that it closes the gap between
the probability-flow ODE and the SDE. This module gives the penalty in labkit's units::

    P = (1 / (n d)) sum_i sigma_i^4 |r(x_i, sigma_i)|^2.

``r`` has units 1 / length^2 (``s`` is 1/length, ``sigma`` a length), so ``sigma^2 r`` is
dimensionless and every row of ``P`` is scale-free (as the ``"edm"`` weighting makes the
denoising loss): rescaling the data and the noise levels by the same factor leaves ``P``
unchanged, and no noise level dominates merely because ``r`` grows like ``sigma^-2`` near 0.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..fokker_planck.residual import fp_residual

__all__ = ["fp_penalty"]


def fp_penalty(model: Callable[..., Tensor], x: Tensor, sigma: Tensor, *,
               class_labels: Tensor | None = None) -> Tensor:
    """Scale-free Fokker-Planck penalty ``mean_i sigma_i^4 |r(x_i, sigma_i)|^2 / d`` of a denoiser.

    Parameters
    ----------
    model : callable
        A denoiser ``model(x, sigma)`` acting row by row, differentiable in ``x`` and ``sigma``
        (an :class:`labkit.nets.EDMPrecond`, or any module whose forward is ``D(x, sigma)``;
        a DistributedDataParallel wrapper is untested, and :func:`labkit.nets.training.train`
        refuses the penalty under DDP). Its score is ``s = (model(x, sigma) - x) / sigma^2``.
    x : Tensor of shape ``(n, d)``
        Noised points ``x0 + sigma eps`` (the rows the denoising loss sees), finite. The cost
        is ``d + 2`` backward passes through the model, kept as a graph: keep ``d`` small.
    sigma : Tensor of shape ``(n,)``
        Noise level of each row, ``> 0``.
    class_labels : Tensor, optional
        Passed to the model as ``model(x, sigma, class_labels)`` (one label per row).

    Returns
    -------
    Tensor
        Scalar ``P = (1/(n d)) sum_i sigma_i^4 |r_i|^2``, differentiable in the model's
        parameters (``r`` from :func:`labkit.fokker_planck.fp_residual` with
        ``create_graph=True``), in ``x``'s dtype.

    Notes
    -----
    ``r = ds/dsigma - sigma grad(div s + |s|^2)`` is zero for the exact score of any target, so
    ``P`` is ``0`` (to rounding) for an exact denoiser (tested with :class:`labkit.Gaussian`).
    ``r`` has units 1/length^2, hence the ``sigma^4``: each row is dimensionless. For
    ``s + c x`` with ``s`` the score of ``N(m, C)``, ``r = 2 sigma c (A (2x - m) - c x)``,
    ``A = (C + sigma^2 I)^{-1}`` (tested). Residual of Lai et al. (arXiv:2210.04296) in the
    variance-exploding form of Deveney et al. (arXiv:2311.15996); the peer is the official
    FP-Diffusion code (``sony/fp-diffusion``, ``losses.py``: ``loss + alpha * vec_fpe`` on the
    perturbed training points, in the SDE's time ``t`` with its own weighting rather than
    ``sigma^4``). Each row is computed as
    ``|sigma^2 r|^2`` (not ``sigma^4 |r|^2``), so that ``|r|^2 ~ sigma^-4`` cannot overflow
    float32 at tiny ``sigma``. In float32 (training) the penalty of an
    :class:`~labkit.nets.EDMPrecond` MLP agrees with its float64 value to ``< 1e-3`` relative
    for ``sigma >= 1e-5`` (measured; 0.6 % at ``1e-6``).

    Raises
    ------
    TypeError
        If ``model`` is not callable or ``x`` is not a floating ``(n, d)`` tensor.
    ValueError
        If ``sigma`` is not an ``(n,)`` tensor of finite levels ``> 0``, ``class_labels`` has
        no row per point, ``x`` is not finite, or the model is not differentiable in ``x`` or
        ``sigma`` (from :func:`labkit.fokker_planck.fp_residual`).

    Examples
    --------
    >>> import torch, labkit
    >>> from labkit.nets.fp_penalty import fp_penalty
    >>> class Exact(torch.nn.Module):
    ...     def __init__(self, target):
    ...         super().__init__()
    ...         self.target = target
    ...     def forward(self, x, sigma, class_labels=None):
    ...         return self.target.denoise(x, sigma)
    >>> exact = Exact(labkit.Gaussian(torch.zeros(2, dtype=torch.float64), torch.eye(2)))
    >>> x = torch.randn(8, 2, dtype=torch.float64)
    >>> float(fp_penalty(exact, x, torch.full((8,), 0.7, dtype=torch.float64)).detach()) < 1e-20
    True
    """
    if not callable(model):
        raise TypeError(f"model must be a callable denoiser model(x, sigma), "
                        f"got {type(model).__name__}")
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.ndim != 2 \
            or x.shape[0] < 1 or x.shape[1] < 1:
        raise TypeError("x must be a floating tensor of shape (n, d) with n, d >= 1 (noised "
                        f"vectors), got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(sigma, Tensor) or sigma.shape != (x.shape[0],):
        raise ValueError(f"sigma must be a tensor of shape ({x.shape[0]},), "
                         f"got {tuple(getattr(sigma, 'shape', ()))}")
    sig = sigma.detach().to(x.dtype)
    if not bool(torch.isfinite(sig).all()) or bool((sig <= 0).any()):
        raise ValueError("sigma must be finite and > 0 in every row")
    if class_labels is not None and (not isinstance(class_labels, Tensor)
                                     or class_labels.shape[:1] != (x.shape[0],)):
        raise ValueError(f"class_labels must be a tensor with one row per point "
                         f"({x.shape[0]}), got {tuple(getattr(class_labels, 'shape', ()))}")

    def score(xg: Tensor, sg: Tensor) -> Tensor:
        denoised = model(xg, sg) if class_labels is None else model(xg, sg, class_labels)
        return (denoised - xg) / sg[:, None] ** 2

    r = fp_residual(score, x, sig, create_graph=True)
    # |sigma^2 r|^2 rather than sigma^4 |r|^2: same value, no float32 overflow of |r|^2.
    return (sig[:, None] ** 2 * r).square().sum(dim=1).mean() / x.shape[1]

"""Divergence of a vector field ``f: R^d -> R^d``, exactly or by Hutchinson's trace estimator.

The log-density of a continuous normalising flow (and of the probability-flow ODE of a diffusion
model) changes at the rate ``-div f = -tr(df/dx)`` along a trajectory. Two ways to get it:

- :func:`exact_divergence`: ``tr J`` from ``d`` reverse-mode passes, one per coordinate, each
  vectorised over the whole batch. Cost ``O(d)`` backward passes; exact to round-off.
- :func:`hutchinson_divergence`: ``eps^T J eps`` with ``E[eps eps^T] = I``, from one
  vector-Jacobian product per probe (Hutchinson 1990; FFJORD, Grathwohl et al. 2019,
  arXiv:1810.01367). Cost ``O(1)`` backward passes per probe whatever ``d``; unbiased, with the
  variance of :func:`hutchinson_variance`.

Both assume ``f`` acts **row-wise**: row ``j`` of ``f(x)`` depends only on row ``j`` of ``x`` (true
for every labkit denoiser at a fixed noise level), so one backward pass through the summed output
gives every row's vector-Jacobian product at once. A field that mixes rows (batch normalisation,
attention across the batch) violates this and gets wrong divergences.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import Tensor

from .._checks import all_finite, check_choice, check_generator, check_positive_int

PROBES = ("rademacher", "gaussian")

Field = Callable[[Tensor], Tensor]


class HutchinsonDivergence(NamedTuple):
    """Result of :func:`hutchinson_divergence` (unpacks as ``value, divergence, variance``).

    Attributes
    ----------
    value : Tensor of shape ``(n, d)``
        ``f(x)``, detached.
    divergence : Tensor of shape ``(n,)``
        Mean over the probes of ``eps_k^T J eps_k``: an unbiased estimate of ``tr J``.
    variance : Tensor of shape ``(n,)`` or None
        Per-point sample variance (``ddof = 1``) of the single-probe estimates; ``None`` when
        ``n_probes == 1``. The variance of ``divergence`` itself is ``variance / n_probes``.
    """

    value: Tensor
    divergence: Tensor
    variance: Tensor | None


def _check_points(x: object, *, finite: bool = False) -> Tensor:
    """``x`` checked to be a floating tensor of shape ``(n, d)``, ``n, d >= 1`` (and finite when
    ``finite``): ``TypeError`` for a non-tensor or a non-floating dtype, ``ValueError`` for a
    wrong shape or non-finite entries. Shared by this module and :mod:`.flow`."""
    expected = "x must be a floating torch.Tensor of shape (n, d) with n, d >= 1"
    if not isinstance(x, Tensor):
        raise TypeError(f"{expected}, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{expected}, got dtype {x.dtype}")
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"{expected}, got shape {tuple(x.shape)}")
    if finite and not all_finite(x):
        raise ValueError("x must be finite, got NaN or inf entries")
    return x


def _evaluate(f: Field, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(x_leaf, f(x_leaf))`` with ``x_leaf`` a detached copy that requires grad."""
    if not callable(f):
        raise TypeError(f"f must be callable as f(x) -> Tensor of x's shape, "
                        f"got {type(f).__name__}")
    x = _check_points(x).detach().requires_grad_(True)
    fx = f(x)
    if not isinstance(fx, Tensor) or fx.shape != x.shape:
        got = tuple(fx.shape) if isinstance(fx, Tensor) else type(fx).__name__
        raise ValueError(f"f(x) must return a tensor of x's shape {tuple(x.shape)}, got {got}")
    if not fx.requires_grad:
        raise ValueError("f(x) does not depend on x through autograd (it returned a tensor "
                         "without a graph): the divergence needs a differentiable f")
    return x, fx


def _vjp(fx: Tensor, x: Tensor, v: Tensor) -> Tensor:
    """``v^T J`` row by row (``f`` row-wise), keeping the graph for further products."""
    (g,) = torch.autograd.grad(fx, x, grad_outputs=v, retain_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def exact_divergence(f: Field, x: Tensor) -> tuple[Tensor, Tensor]:
    """``f(x)`` and the exact divergence ``div f(x) = tr(df/dx) = sum_i df_i/dx_i``.

    Computed with ``d`` reverse-mode passes, pass ``i`` giving ``e_i^T J`` for every row at once,
    so the cost is ``O(d)`` evaluations of the backward graph, vectorised over the batch. Use it
    when ``d`` is small (toy targets, up to a few hundred dimensions); for large ``d`` use
    :func:`hutchinson_divergence`.

    Parameters
    ----------
    f : callable
        ``f(x) -> Tensor`` of ``x``'s shape, differentiable, acting row-wise (see the module
        docstring).
    x : Tensor of shape ``(n, d)``
        Points; float64 recommended, dtype and device follow ``x``.

    Returns
    -------
    value : Tensor of shape ``(n, d)``
        ``f(x)``, detached.
    divergence : Tensor of shape ``(n,)``
        ``tr J(x)``, detached.

    Notes
    -----
    Matches ``torch.func.jacrev`` followed by a trace, but works for fields with data-dependent
    Python control flow (labkit targets), which ``vmap`` cannot trace.

    References
    ----------
    Chen, Rubanova, Bettencourt, Duvenaud, "Neural ordinary differential equations", NeurIPS
    2018, arXiv:1806.07366 (instantaneous change of variables).

    Examples
    --------
    >>> a = torch.tensor([[1.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    >>> _, div = exact_divergence(lambda y: y @ a.T, torch.zeros(4, 2, dtype=torch.float64))
    >>> div
    tensor([4., 4., 4., 4.], dtype=torch.float64)
    """
    with torch.enable_grad():
        x, fx = _evaluate(f, x)
        d = x.shape[1]
        div = x.new_zeros(x.shape[0])
        for i in range(d):  # a loop over coordinates, each pass vectorised over the batch
            e = torch.zeros_like(fx)
            e[:, i] = 1
            div = div + _vjp(fx, x, e)[:, i]
    return fx.detach(), div.detach()


def draw_probes(n_probes: int, shape: tuple[int, int], *, probe: str = "rademacher",
                generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
                device: torch.device | str | None = None) -> Tensor:
    """``n_probes`` probe batches ``eps`` with ``E[eps] = 0``, ``E[eps eps^T] = I``.

    Parameters
    ----------
    n_probes : int
        Number of independent probe batches, ``>= 1``.
    shape : (n, d)
        Shape of one batch (that of the points ``x``).
    probe : {"rademacher", "gaussian"}
        Independent signs ``+-1`` or standard normals.
    generator : torch.Generator, optional
        Source of the draws (``None``: torch's global generator). It must live on ``device``
        (a CPU generator for CPU probes), as ``torch.randint`` / ``torch.randn`` require.
    dtype : torch.dtype
        Floating dtype of the result (default float64); Rademacher signs are drawn as
        integers and converted, so they are exactly ``+-1`` in any dtype.
    device : torch.device or str, optional
        Device of the result (``None``: the default device); pass ``x.device``.

    Returns
    -------
    Tensor of shape ``(n_probes, n, d)``.
    """
    n_probes = check_positive_int(n_probes, "n_probes")
    check_choice(probe, "probe", PROBES)
    check_generator(generator)
    size = (n_probes, *shape)
    if probe == "gaussian":
        return torch.randn(size, generator=generator, dtype=dtype, device=device)
    signs = torch.randint(0, 2, size, generator=generator, device=device)
    return (2 * signs - 1).to(dtype)


def probe_estimates(f: Field, x: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """``f(x)`` and the single-probe estimates ``eps_k^T J eps_k``, shape ``(K, n)``.

    One vector-Jacobian product per probe, each vectorised over the batch. ``noise`` of shape
    ``(K, n, d)`` is used as given, so a caller can fix probes along a trajectory (FFJORD) or
    plant a defect (probes of the wrong scale) in a negative control.
    """
    if not isinstance(noise, Tensor) or noise.ndim != 3 or noise.shape[1:] != x.shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must have shape (n_probes, *x.shape) = (K, {x.shape[0]}, "
                         f"{x.shape[1]}), got {got}")
    with torch.enable_grad():
        x, fx = _evaluate(f, x)
        noise = noise.to(dtype=fx.dtype, device=fx.device)
        est = torch.stack([(_vjp(fx, x, eps) * eps).sum(dim=1) for eps in noise])
    return fx.detach(), est.detach()


def hutchinson_divergence(f: Field, x: Tensor, *, n_probes: int = 1, probe: str = "rademacher",
                          generator: torch.Generator | None = None,
                          noise: Tensor | None = None) -> HutchinsonDivergence:
    """``f(x)`` and Hutchinson's unbiased estimate of ``div f(x)`` from vector-Jacobian products.

    ``tr J = E[eps^T J eps]`` for any probe with ``E[eps eps^T] = I``; the estimate averages
    ``eps_k^T J eps_k`` over ``K = n_probes`` independent probes, one reverse pass each (cost
    independent of ``d``). The variance of one probe's estimate is (:func:`hutchinson_variance`)

    - Gaussian probes: ``2 ||J_s||_F^2`` with ``J_s = (J + J^T) / 2``;
    - Rademacher probes: ``2 (||J_s||_F^2 - sum_i J_ii^2)``, never larger, and zero for a
      diagonal ``J`` (Hutchinson 1990 showed Rademacher probes minimise the variance).

    Parameters
    ----------
    f : callable
        ``f(x) -> Tensor`` of ``x``'s shape, differentiable, row-wise (module docstring).
    x : Tensor of shape ``(n, d)``
    n_probes : int
        ``K >= 1``.
    probe : {"rademacher", "gaussian"}
    generator : torch.Generator, optional
        Source of the probes.
    noise : Tensor of shape ``(K, n, d)``, optional
        Probes to use instead of drawing them (``n_probes``, ``probe`` and ``generator`` are then
        ignored).

    Returns
    -------
    HutchinsonDivergence
        ``(value, divergence, variance)``; ``variance`` is the per-point sample variance of the
        single-probe estimates (``None`` when ``K == 1``).

    References
    ----------
    Hutchinson, "A stochastic estimator of the trace of the influence matrix for Laplacian
    smoothing splines", Comm. Stat. Simul. Comput. 19(2), 1990.
    Grathwohl, Chen, Bettencourt, Sutskever, Duvenaud, "FFJORD", ICLR 2019, arXiv:1810.01367.
    Skorski, "Modern analysis of Hutchinson's trace estimator", CISS 2021.

    Examples
    --------
    >>> a = torch.tensor([[1.0, 2.0], [0.0, 3.0]], dtype=torch.float64)
    >>> g = torch.Generator().manual_seed(0)
    >>> res = hutchinson_divergence(lambda y: y @ a.T, torch.zeros(3, 2, dtype=torch.float64),
    ...                             n_probes=4000, generator=g)
    >>> bool((res.divergence - 4).abs().max() < 0.2)
    True
    """
    x = _check_points(x)
    if noise is None:
        noise = draw_probes(n_probes, tuple(x.shape), probe=probe, generator=generator,
                            dtype=x.dtype, device=x.device)
    fx, est = probe_estimates(f, x, noise)
    variance = est.var(dim=0) if est.shape[0] > 1 else None
    return HutchinsonDivergence(fx, est.mean(dim=0), variance)


def hutchinson_variance(jacobian: Tensor, probe: str = "rademacher") -> Tensor:
    """Exact variance of the single-probe estimate ``eps^T J eps`` given the Jacobian.

    With ``J_s = (J + J^T) / 2`` (only the symmetric part enters ``eps^T J eps``):

    - Gaussian: ``Var = 2 ||J_s||_F^2 = 2 tr(J_s^2)``;
    - Rademacher: ``Var = 2 (||J_s||_F^2 - sum_i J_ii^2)`` (the diagonal is read exactly).

    Parameters
    ----------
    jacobian : Tensor of shape ``(..., d, d)``
    probe : {"rademacher", "gaussian"}

    Returns
    -------
    Tensor of shape ``(...)``.

    References
    ----------
    Hutchinson (1990); Avron & Toledo, "Randomized algorithms for estimating the trace of an
    implicit symmetric positive semi-definite matrix", J. ACM 58(2), 2011; Skorski (2021).
    """
    check_choice(probe, "probe", PROBES)
    if not isinstance(jacobian, Tensor) or jacobian.ndim < 2 or \
            jacobian.shape[-1] != jacobian.shape[-2]:
        got = tuple(jacobian.shape) if isinstance(jacobian, Tensor) else type(jacobian).__name__
        raise ValueError(f"jacobian must be a tensor of shape (..., d, d), got {got}")
    sym = (jacobian + jacobian.transpose(-1, -2)) / 2
    frob = sym.square().sum(dim=(-1, -2))
    if probe == "gaussian":
        return 2 * frob
    return 2 * (frob - jacobian.diagonal(dim1=-2, dim2=-1).square().sum(dim=-1))

"""Exact reference solutions of the probability-flow ODE."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import as_float_tensor, check_points


def gaussian_flow_map(mean: Any, cov: Any, x: Tensor, sigma_from: float,
                      sigma_to: float) -> Tensor:
    """Exact probability-flow map of a Gaussian target ``N(mean, cov)`` from ``sigma_from`` to
    ``sigma_to``.

    With ``cov = U diag(l) U^T``, the PF-ODE ``dx/dsigma = (x - D(x, sigma)) / sigma`` has the
    solution ``x(b) = m + U diag(sqrt((l + b^2) / (l + a^2))) U^T (x(a) - m)``; on the null space
    of ``cov`` the factor is ``b / a``. Singular (low-rank) covariances are allowed.

    Parameters
    ----------
    mean : (d,) array-like
    cov : (d, d) symmetric positive semi-definite array-like
    x : Tensor of shape ``(n, d)``
        Points at ``sigma_from``; dtype and device of the result follow ``x``.
    sigma_from, sigma_to : float
        Start and end noise levels, ``sigma_from > 0`` and ``sigma_to >= 0``.

    Returns
    -------
    Tensor of shape ``(n, d)``.
    """
    m = as_float_tensor(mean, "mean", dtype=torch.float64)
    if m.ndim != 1:
        raise ValueError(f"mean must have shape (d,), got {tuple(m.shape)}")
    d = m.shape[0]
    c = as_float_tensor(cov, "cov", dtype=torch.float64)
    if c.shape != (d, d) or not torch.allclose(c, c.T, atol=1e-12, rtol=1e-10):
        raise ValueError(f"cov must be a symmetric ({d}, {d}) matrix, got shape {tuple(c.shape)}")
    x = check_points(x, d)
    a, b = float(sigma_from), float(sigma_to)
    if not a > 0 or not b >= 0:
        raise ValueError(f"sigma_from must be > 0 and sigma_to >= 0, got {a} and {b}")
    lam, u = torch.linalg.eigh(c)
    if float(lam.min()) < -1e-10 * max(float(lam.max()), 1.0):
        raise ValueError("cov must be positive semi-definite")
    lam = lam.clamp_min(0)
    factor = torch.sqrt((lam + b * b) / (lam + a * a))
    m_, u_, f_ = (t.to(dtype=x.dtype, device=x.device) for t in (m, u, factor))
    return m_ + ((x - m_) @ u_) * f_ @ u_.T

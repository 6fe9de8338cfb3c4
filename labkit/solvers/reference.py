"""Reference solutions of the probability-flow ODE: exact (Gaussian) and DOP853 (any denoiser)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy import integrate
from torch import Tensor

from .._checks import as_float_tensor, check_points
from .base import Denoiser, check_denoiser_and_state


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


@dataclass(frozen=True)
class ReferenceFlow:
    """A high-accuracy numerical solution of the probability-flow ODE.

    Attributes
    ----------
    x : Tensor
        The solution at ``sigma_to``, in the input's shape, dtype and device (computed in
        float64 at the tighter tolerance ``rtol / 10``).
    error_bound : float
        A-posteriori error estimate: the largest absolute difference, over all entries, between
        the solutions at ``rtol`` and at ``rtol / 10``. It estimates the error of the looser
        solution, so it bounds that of the returned one whenever the error falls with the
        tolerance (the usual behaviour of an embedded Runge-Kutta method away from round-off).
        It is an estimate, not a proof.
    nfe : int
        Denoiser evaluations made by both solves together (each on the whole batch).
    """

    x: Tensor
    error_bound: float
    nfe: int


# scipy raises any rtol below 100 * machine epsilon to that value (with a warning); the tighter
# of the two solves uses rtol / 10, so rtol must be at least ten times that floor.
_MIN_RTOL = 1000 * float(np.finfo(np.float64).eps)


def _positive_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a positive float, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value}")
    return value


def reference_flow(denoiser: Denoiser, x: Tensor, sigma_from: float, sigma_to: float, *,
                   rtol: float = 1e-12, atol: float = 1e-12) -> ReferenceFlow:
    """Solve the probability-flow ODE for any denoiser to high accuracy, with an error estimate.

    Integrates ``dx/dsigma = (x - D(x, sigma)) / sigma`` from ``sigma_from`` to ``sigma_to``
    written in ``t = log sigma``, ``dx/dt = x - D(x, e^t)``, with scipy's DOP853 (Dormand-Prince
    8(5,3)) on the whole batch flattened into one state. In ``log sigma`` the linear part of the
    vector field has unit size at every noise level, so the adaptive steps stay balanced from
    ``sigma = 80`` down to ``sigma = 1e-3`` instead of crowding near small sigma. The problem is
    solved twice, at ``rtol`` and ``rtol / 10`` (same ``atol / 10`` scaling); the tighter
    solution is returned and the largest difference between the two is reported as
    ``error_bound``.

    Parameters
    ----------
    denoiser : callable
        ``D(x, sigma) -> E[x0 | x]`` with ``x`` of shape ``(n, ...)`` and ``sigma`` of shape
        ``(n,)``; any labkit ``Target`` is one. It is called with float64 tensors on ``x``'s
        device.
    x : Tensor of shape ``(n, ...)``
        The state at ``sigma_from``.
    sigma_from, sigma_to : float
        Start and end noise levels, both ``> 0`` (the ODE is singular at ``sigma = 0``; integrate
        to a small sigma instead). Either direction is allowed.
    rtol, atol : float
        Tolerances of the looser solve, ``rtol >= 1000 * eps`` (about 2.2e-13) so that the
        tighter solve's ``rtol / 10`` is one scipy accepts, ``atol > 0``.

    Returns
    -------
    ReferenceFlow
        ``x`` (the solution), ``error_bound`` (a-posteriori estimate) and ``nfe``.

    Raises
    ------
    TypeError
        If ``denoiser`` is not callable, ``x`` is not a floating tensor, or a number is not one.
    ValueError
        For non-finite ``x``, non-positive sigmas or tolerances, ``rtol`` below the floor, or a
        denoiser output of the wrong shape or with NaN/inf entries.
    RuntimeError
        If the integrator fails.

    References
    ----------
    Hairer, Norsett, Wanner, "Solving Ordinary Differential Equations I", 2nd ed., Springer 1993,
    Sec. II.10 (DOP853) and II.4 (error estimation by comparing tolerances). Karras et al. (2022),
    arXiv:2206.00364, Eq. 4 (the PF-ODE in this form).

    Examples
    --------
    >>> import torch, labkit
    >>> target = labkit.Gaussian(torch.zeros(2), torch.eye(2))
    >>> x = 2.0 * torch.randn(4, 2, dtype=torch.float64)
    >>> ref = reference_flow(target, x, 2.0, 0.05)
    >>> exact = gaussian_flow_map(torch.zeros(2), torch.eye(2), x, 2.0, 0.05)
    >>> bool((ref.x - exact).abs().max() <= ref.error_bound)
    True
    """
    check_denoiser_and_state(denoiser, x)
    a = _positive_float(sigma_from, "sigma_from")
    b = _positive_float(sigma_to, "sigma_to")
    rtol, atol = _positive_float(rtol, "rtol"), _positive_float(atol, "atol")
    if rtol < _MIN_RTOL:
        raise ValueError(f"rtol must be >= {_MIN_RTOL:.3g} (rtol / 10 is the tighter solve's "
                         f"tolerance, and scipy's floor is 100 * eps), got {rtol}")
    if a == b:
        return ReferenceFlow(x=x.clone(), error_bound=0.0, nfe=0)

    shape, n = x.shape, x.shape[0]
    x64 = x.detach().to(torch.float64)
    nfe = 0

    def rhs(log_sigma: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        state = torch.from_numpy(y).reshape(shape).to(x64.device)
        sigma = torch.full((n,), math.exp(log_sigma), dtype=torch.float64, device=x64.device)
        denoised = denoiser(state, sigma)
        if not isinstance(denoised, Tensor) or denoised.shape != shape:
            got = tuple(denoised.shape) if isinstance(denoised, Tensor) else type(denoised).__name__
            raise ValueError(f"denoiser must return a tensor of the input's shape {tuple(shape)}, "
                             f"got {got}")
        out = (state - denoised.to(torch.float64)).reshape(-1).cpu().numpy()
        if not np.isfinite(out).all():
            raise ValueError(f"denoiser returned NaN or inf at sigma = {math.exp(log_sigma):.6g}")
        return out

    y0 = x64.reshape(-1).cpu().numpy()
    solutions = []
    for scale in (1.0, 0.1):
        sol = integrate.solve_ivp(rhs, (math.log(a), math.log(b)), y0, method="DOP853",
                                  rtol=rtol * scale, atol=atol * scale)
        if not sol.success:
            raise RuntimeError(f"DOP853 failed at rtol={rtol * scale:g}: {sol.message}")
        solutions.append(sol.y[:, -1])
    error_bound = float(np.abs(solutions[0] - solutions[1]).max())
    out = torch.from_numpy(solutions[1]).reshape(shape).to(dtype=x.dtype, device=x.device)
    return ReferenceFlow(x=out, error_bound=error_bound, nfe=nfe)

"""Exact-marginal propagation in 1-D on a uniform grid: continuity (PF-ODE) and Fokker-Planck
(reverse SDE).

Coordinates (EDM): ``x_sigma = x0 + sigma * eps``, ``p_sigma = p_0 * N(0, sigma^2)``. Both
samplers run from ``sigma_max`` down to ``sigma_min``; with ``tau = -sigma`` (reverse time,
``d tau = -d sigma > 0``) and a score field ``s(x, sigma)``:

* probability-flow ODE ``dx/dsigma = -sigma s``, i.e. ``dx/dtau = sigma s``; its density obeys
  the continuity equation ``dq/dsigma + d/dx(q v) = 0``, ``v = -sigma s``, i.e.::

      dq/dtau = -d/dx( sigma s q );

* reverse SDE ``dx = -2 sigma s dsigma + sqrt(2 sigma) dW`` (EDM Eq. 6 with ``beta = 1``, run
  with ``sigma`` decreasing; ``dx = 2 sigma s dtau + sqrt(2 sigma) dW_tau``), whose density obeys
  the Fokker-Planck equation::

      dq/dtau = -d/dx( 2 sigma s q ) + sigma d^2q/dx^2.

With the exact score (``p s = p'``) both right-hand sides equal ``-sigma p''``, the heat equation
``dp/dsigma = sigma p''`` run backwards, so both reproduce ``p_sigma``.

Schemes: conservative finite volumes on cell centres ``x_i`` (uniform spacing ``h``), fluxes at
the ``N - 1`` interior faces and zero flux through the two boundary faces (mass is conserved to
round-off; the grid must cover the density). Advection: MUSCL reconstruction with the van Leer
limiter (second order away from extrema, TVD) and upwinding by the face velocity, advanced by
the SSP-RK2 (Heun) method (one score evaluation per axis and step: the end-of-step velocity is
reused as the next step's start velocity), stable for ``CFL = dtau max|w| / h <= 1`` at both
stages. Diffusion (SDE only):
Crank-Nicolson with a tridiagonal banded solve (``scipy.linalg.solve_banded``), unconditionally
stable, Strang-split around the advection step (second order in time).
References: LeVeque, *Finite Volume Methods for Hyperbolic Problems* (2002), Ch. 6; the gap
study follows Deveney et al., arXiv:2311.15996.

The private pieces (limiter, axis-wise flux, Crank-Nicolson solve, input checks, step-size rule,
warnings) act along any axis of an array; :mod:`labkit.fokker_planck.grid2d` builds the 2-D
solvers from them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from scipy.linalg import solve_banded

from .._checks import as_float_tensor

_MAX_CFL = 1.0
_AUTO_CFL = 0.5
_DIFFUSION_STEP = 0.25
_EDGE_MASS = 1e-4
_MAX_STEPS = 1_000_000  # a run predicted to need more is a mis-scaled score or step: raise
_MAX_SHRINK = 50        # step reductions tried when the velocity jumps within a step


@dataclass(frozen=True)
class GridMarginals:
    """Densities on the grid at the requested noise levels.

    Attributes
    ----------
    sigmas : Tensor of shape ``(m,)``
        The requested levels, decreasing (the first is the start level of ``q0``).
    density : Tensor of shape ``(m, N)`` (1-D) or ``(m, Nx, Ny)`` (2-D)
        ``q`` on the grid at each level (float64); in 2-D ``density[k, i, j]`` is at
        ``(grid_x[i], grid_y[j])`` (``indexing="ij"``).
    mass : Tensor of shape ``(m,)``
        ``h * sum(q)`` (1-D) or ``hx * hy * sum(q)`` (2-D) at each level (conserved to round-off
        by the scheme).
    mass_drift : float
        ``max |mass - mass[0]| / mass[0]``.
    n_steps : int
        Time steps taken in total.
    max_cfl : float
        Largest ``dtau max|w| / h`` (2-D: ``dtau (max|w_x| / hx + max|w_y| / hy)``) met, with
        ``w`` taken at either stage of each step (start and end velocity).
    """

    sigmas: torch.Tensor
    density: torch.Tensor
    mass: torch.Tensor
    mass_drift: float
    n_steps: int
    max_cfl: float


def _check_grid(grid: Any, name: str = "grid") -> tuple[np.ndarray, float]:
    t = as_float_tensor(grid, name).detach().cpu()
    # spacing tolerance from the input's precision: a float32 linspace is uniform to ~1e-7
    tol = max(1e-9, 64 * torch.finfo(t.dtype).eps)
    g = t.to(torch.float64).numpy()
    if g.ndim != 1 or g.size < 8:
        raise ValueError(f"{name} must be a 1-D array of at least 8 uniformly spaced points, "
                         f"got shape {g.shape}")
    h = (g[-1] - g[0]) / (g.size - 1)
    if not h > 0 or np.abs(np.diff(g) - h).max() > tol * max(h, abs(g).max()):
        raise ValueError(f"{name} must be increasing and uniformly spaced (e.g. "
                         f"torch.linspace(lo, hi, N))")
    return g, float(h)


def _check_sigmas(sigmas: Any) -> np.ndarray:
    s = as_float_tensor(sigmas, "sigmas").detach().cpu().to(torch.float64).numpy().reshape(-1)
    if s.size < 2 or not (s > 0).all() or not (np.diff(s) < 0).all():
        raise ValueError(f"sigmas must be at least 2 strictly decreasing noise levels > 0 "
                         f"(sigma_max first: the level of q0), got {s.tolist()}")
    return s


def _check_q0(q0: Any, shape: tuple[int, ...], names: tuple[str, ...]) -> np.ndarray:
    q = as_float_tensor(q0, "q0").detach().cpu().to(torch.float64).numpy()
    if q.shape != shape:
        layout = "" if len(shape) == 1 else ", q0[i, j] at (grid_x[i], grid_y[j])"
        raise ValueError(f"q0 must have shape ({', '.join(f'len({n})' for n in names)}) = "
                         f"{shape}{layout}, got {q.shape}")
    if (q < 0).any() or not q.sum() > 0:
        raise ValueError("q0 must be a density on the grid: >= 0 with positive mass")
    return q


def _check_dsigma(dsigma: Any) -> float | None:
    if dsigma is None:
        return None
    try:
        if isinstance(dsigma, (bool, str, bytes)):
            raise TypeError
        step = float(dsigma)  # a number or a one-element array / tensor
    except (TypeError, ValueError) as err:
        raise TypeError(f"dsigma must be a real number > 0 (the largest step in sigma) or None "
                        f"(automatic), got {type(dsigma).__name__}") from err
    if not step > 0:
        raise ValueError(f"dsigma must be a step > 0 or None (automatic), got {dsigma!r}")
    return step


def _edge_fraction(q: np.ndarray) -> float:
    """Share of the mass in the two outer cells at each end of every axis (the outer rings)."""
    total = q.sum()
    return float((total - q[(slice(2, -2),) * q.ndim].sum()) / total)


def _face_points(centres: list[np.ndarray], axis: int) -> torch.Tensor:
    """``(n, d)`` points of the faces normal to ``axis`` (cell centres along the other axes),
    flattened in ``indexing="ij"`` order."""
    coords = [0.5 * (c[1:] + c[:-1]) if a == axis else c for a, c in enumerate(centres)]
    mesh = np.meshgrid(*coords, indexing="ij")
    return torch.as_tensor(np.stack([m.reshape(-1) for m in mesh], axis=1), dtype=torch.float64)


def _face_score(score_fn: Callable, faces: torch.Tensor, sigma: float, axis: int) -> np.ndarray:
    """Component ``axis`` of ``score_fn(faces, sigma)`` as a float64 array of shape ``(n,)``."""
    s = score_fn(faces, sigma)
    if isinstance(s, torch.Tensor) and not s.is_floating_point():
        raise TypeError(f"score_fn(x, sigma) must return a real floating tensor, got dtype "
                        f"{s.dtype}")
    if not isinstance(s, torch.Tensor) or s.shape != faces.shape:
        shape = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise ValueError(f"score_fn(x, sigma) must return a tensor of shape {tuple(faces.shape)} "
                         f"(the shape of x, (n, {faces.shape[1]}) in {faces.shape[1]}-D), "
                         f"got {shape}")
    out = s.detach().cpu().to(torch.float64).numpy()[:, axis]
    if not np.isfinite(out).all():
        raise ValueError(f"score_fn returned NaN or inf at sigma={sigma:.4g}")
    return out


def _van_leer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Van Leer limited slope ``2ab/(a+b)`` where ``ab > 0``, else 0."""
    ab = a * b
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ab > 0, 2 * ab / (a + b), 0.0)


def _advection_rhs(q: np.ndarray, w: np.ndarray, h: float, axis: int = 0) -> np.ndarray:
    """``-d/dx_axis(w q)`` by MUSCL-van-Leer upwind fluxes at the interior faces normal to
    ``axis`` (``w`` has ``q``'s shape with one entry fewer along ``axis``), zero boundary flux.
    Vectorised over the other axes."""
    q, w = np.moveaxis(q, axis, 0), np.moveaxis(w, axis, 0)
    dq = np.diff(q, axis=0)
    slope = np.zeros_like(q)
    slope[1:-1] = _van_leer(dq[:-1], dq[1:])
    left = q[:-1] + 0.5 * slope[:-1]   # reconstructed value at face i+1/2 from cell i
    right = q[1:] - 0.5 * slope[1:]    # ... from cell i+1
    flux = np.where(w > 0, w * left, w * right)
    wall = np.zeros((1,) + q.shape[1:])
    full = np.concatenate((wall, flux, wall))
    return np.moveaxis(-np.diff(full, axis=0) / h, 0, axis)


def _cn_half_step(q: np.ndarray, kappa: float, h: float, axis: int = 0) -> np.ndarray:
    """Crank-Nicolson step of ``dq/dtau = kappa d^2q/dx_axis^2`` (zero-flux ends),
    ``kappa = sigma * dt``: one banded tridiagonal solve with every line along ``axis`` as a
    right-hand side."""
    q = np.moveaxis(q, axis, 0)
    n = q.shape[0]
    r = 0.5 * kappa / (h * h)
    lap = np.empty_like(q)
    lap[1:-1] = q[2:] - 2 * q[1:-1] + q[:-2]
    lap[0], lap[-1] = q[1] - q[0], q[-2] - q[-1]
    rhs = (q + r * lap).reshape(n, -1) if q.ndim > 1 else q + r * lap
    diag = np.full(n, 1 + 2 * r)
    diag[0] = diag[-1] = 1 + r
    ab = np.zeros((3, n))
    ab[0, 1:] = -r
    ab[1] = diag
    ab[2, :-1] = -r
    out = solve_banded((1, 1), ab, rhs, check_finite=False)
    return np.moveaxis(out.reshape(q.shape), 0, axis)


def _diffuse(q: np.ndarray, kappa: float, spacings: list[float]) -> np.ndarray:
    """Crank-Nicolson along each axis in turn: exact splitting, the 1-D Laplacians (zero-flux
    ends) act on different axes and commute."""
    for axis, h in enumerate(spacings):
        q = _cn_half_step(q, kappa, h, axis)
    return q


def _advect(q: np.ndarray, ws: list[np.ndarray], spacings: list[float]) -> np.ndarray:
    """Unsplit advection right-hand side: the sum of the axis-wise flux differences."""
    rhs = _advection_rhs(q, ws[0], spacings[0], 0)
    for axis in range(1, q.ndim):
        rhs = rhs + _advection_rhs(q, ws[axis], spacings[axis], axis)
    return rhs


def _propagate(q0: Any, grids: list[tuple[Any, str]], sigmas: Any, score_fn: Callable,
               dsigma: float | None, diffusion: bool) -> GridMarginals:
    """Shared 1-D / 2-D solver: checks, step-size rule, SSP-RK2 (+ Strang CN), warnings."""
    checked = [_check_grid(g, name) for g, name in grids]
    centres, spacings = [c for c, _ in checked], [h for _, h in checked]
    names = tuple(name for _, name in grids)
    dim = len(grids)
    sig = _check_sigmas(sigmas)
    q = _check_q0(q0, tuple(c.size for c in centres), names)
    if not callable(score_fn):
        raise TypeError(f"score_fn must be a callable score_fn(x, sigma) -> (n, {dim}) tensor, "
                        f"got {type(score_fn).__name__}")
    step = _check_dsigma(dsigma)
    for name, h in zip(names, spacings):
        if h > 0.5 * sig[-1]:
            warnings.warn(f"{name} spacing h={h:.3g} exceeds sigma_min/2={sig[-1] / 2:.3g}: "
                          f"features of p_sigma as narrow as sigma_min are unresolved; refine "
                          f"grid", RuntimeWarning, stacklevel=3)
    where = "two cells at each end of grid" if dim == 1 else "two outer rings of grid cells"
    edge = _edge_fraction(q)
    if edge > _EDGE_MASS:
        warnings.warn(f"q0 has {edge:.2g} of its mass in the {where}: widen grid (zero-flux "
                      f"walls would reflect it)", RuntimeWarning, stacklevel=3)
    faces = [_face_points(centres, axis) for axis in range(dim)]
    shapes = [tuple(c.size - (a == axis) for a, c in enumerate(centres)) for axis in range(dim)]
    speed = 2.0 if diffusion else 1.0  # drift w = speed * sigma * s in reverse time

    def velocity(s: float) -> list[np.ndarray]:
        return [(speed * s * _face_score(score_fn, faces[a], s, a)).reshape(shapes[a])
                for a in range(dim)]

    def rate_of(ws: list[np.ndarray]) -> float:  # CFL rate sum_a max|w_a| / h_a
        return sum(float(np.abs(w).max()) / h for w, h in zip(ws, spacings))

    out, steps, worst = [q.copy()], 0, 0.0
    for hi, lo in zip(sig[:-1], sig[1:]):
        n_sub = None if step is None else max(1, math.ceil((hi - lo) / step - 1e-9))
        if n_sub is not None and steps + n_sub > _MAX_STEPS:
            raise ValueError(f"dsigma={step:.3g} needs more than {_MAX_STEPS} steps: use a "
                             f"larger dsigma or dsigma=None")
        cur = hi
        w0 = velocity(cur)  # then the second-stage velocity of the previous step
        rate0 = rate_of(w0)
        while cur - lo > 1e-12 * (hi - lo):  # round-off in cur -= dt: no sliver step
            if n_sub is None:
                # SDE: also cap the Crank-Nicolson step at sigma/4 (diffusion length
                # sqrt(sigma dtau) <= sigma/2, below the width ~sigma of p_sigma's features):
                # a drift-only CFL step is unbounded for a small score, e.g. s = 0.
                dt = min(cur - lo, _AUTO_CFL / rate0 if rate0 > 0 else math.inf,
                         _DIFFUSION_STEP * cur if diffusion else math.inf)
            else:
                dt = min(cur - lo, (hi - lo) / n_sub)
            # the second stage uses the velocity at cur - dt, which may be larger (e.g. a score
            # error switched on at a hard sigma edge): the automatic step shrinks until that
            # stage also meets the CFL condition; a fixed dsigma must meet it as given
            for _ in range(_MAX_SHRINK):
                w1 = velocity(cur - dt)
                rate1 = rate_of(w1)
                if n_sub is not None or dt * rate1 <= _MAX_CFL:
                    break
                dt = _AUTO_CFL / rate1
            else:
                raise ValueError(f"the velocity w = {speed:g} sigma score_fn keeps growing as the "
                                 f"step shrinks at sigma={cur:.4g} (CFL rate {rate1:.3g} at "
                                 f"step {dt:.3g}): check score_fn for a singularity there")
            rate = max(rate0, rate1)
            cfl = dt * rate
            if cfl > _MAX_CFL:
                raise ValueError(f"time step dsigma={dt:.3g} violates the CFL condition at "
                                 f"sigma={cur:.4g} (CFL={cfl:.3g} > {_MAX_CFL}): use "
                                 f"dsigma <= {_MAX_CFL / rate:.3g}, dsigma=None, or a "
                                 f"coarser grid")
            if n_sub is None and steps + (cur - lo) / dt > _MAX_STEPS:
                raise ValueError(f"the automatic step dsigma={dt:.3g} at sigma={cur:.4g} (CFL "
                                 f"rate sum max|w|/h = {rate:.3g}, w = {speed:g} sigma "
                                 f"score_fn) needs more than {_MAX_STEPS} steps: check the "
                                 f"scale of score_fn, or use a coarser grid")
            worst = max(worst, cfl)
            mid = cur - 0.5 * dt
            if diffusion:
                q = _diffuse(q, (cur - 0.25 * dt) * 0.5 * dt, spacings)
            stage = q + dt * _advect(q, w0, spacings)
            q = 0.5 * (q + stage + dt * _advect(stage, w1, spacings))
            if diffusion:
                q = _diffuse(q, (mid - 0.25 * dt) * 0.5 * dt, spacings)
            cur -= dt
            w0, rate0 = w1, rate1
            steps += 1
        out.append(q.copy())
    dens = np.stack(out)
    reached = [float(sv) for sv, d in zip(sig[1:], dens[1:]) if _edge_fraction(d) > _EDGE_MASS]
    if reached:  # a wrong score can push mass onto the walls even when q0 fits the grid
        warnings.warn(f"the density reached the ends of grid (more than {_EDGE_MASS:g} of its "
                      f"mass in the {where}) at sigma={reached[0]:.4g}: widen grid (the "
                      f"zero-flux walls reflect mass, so the marginals there are wrong)",
                      RuntimeWarning, stacklevel=3)
    mass = dens.reshape(dens.shape[0], -1).sum(axis=1) * math.prod(spacings)
    return GridMarginals(torch.as_tensor(sig), torch.as_tensor(dens), torch.as_tensor(mass),
                         float(np.abs(mass - mass[0]).max() / mass[0]), steps, float(worst))


def continuity_1d(q0: Any, grid: Any, sigmas: Any, score_fn: Callable,
                  dsigma: float | None = None) -> GridMarginals:
    """Density of the probability-flow ODE ``dx/dsigma = -sigma s(x, sigma)`` on a 1-D grid.

    Solves the continuity equation ``dq/dsigma = -d/dx(q v)``, ``v = -sigma s``, from
    ``sigmas[0]`` down to ``sigmas[-1]`` (conservative MUSCL/van Leer upwind finite volumes,
    SSP-RK2 in time; see the module docstring).

    Parameters
    ----------
    q0 : array_like of shape ``(N,)``
        Density at ``sigmas[0]`` on ``grid`` (e.g. ``target.log_prob(grid[:, None],
        sigma_max).exp()``); ``>= 0``.
    grid : array_like of shape ``(N,)``
        Uniform, increasing cell centres, wide enough that the density vanishes at both ends.
    sigmas : sequence of float
        Strictly decreasing levels; the density is returned at each.
    score_fn : callable
        ``score_fn(x, sigma) -> (n, 1)`` for ``x`` of shape ``(n, 1)`` (float64) and a float
        ``sigma``; e.g. ``target.score``.
    dsigma : float, optional
        Largest step in sigma (each interval is split evenly); ``None`` picks ``CFL = 0.5``
        steps (and, for :func:`fokker_planck_1d`, at most ``sigma / 4``). A step with
        ``CFL > 1`` (at the velocity of either RK stage) raises ``ValueError``.

    Returns
    -------
    GridMarginals
        Densities, masses and the mass drift. Accuracy: second order in ``h`` and ``dsigma``
        away from extrema of ``q`` (the limiter clips there), see docs for measured orders.

    Raises
    ------
    TypeError
        Non-numeric ``q0``, ``grid``, ``sigmas`` or ``dsigma``; ``score_fn`` not callable or
        returning a non-floating tensor.
    ValueError
        ``grid`` not uniform and increasing (at least 8 points), ``q0`` of the wrong shape or
        not a density, ``sigmas`` not strictly decreasing and positive, a score of the wrong
        shape or not finite, a fixed ``dsigma`` violating the CFL condition, or a run needing
        more than 10^6 steps (a mis-scaled score or a tiny ``dsigma``).

    Warns
    -----
    RuntimeWarning
        ``h`` above ``sigma_min / 2`` ("refine grid"); more than ``1e-4`` of the mass in the two
        cells at each end, for ``q0`` or any returned density ("widen grid").
    """
    return _propagate(q0, [(grid, "grid")], sigmas, score_fn, dsigma, diffusion=False)


def fokker_planck_1d(q0: Any, grid: Any, sigmas: Any, score_fn: Callable,
                     dsigma: float | None = None) -> GridMarginals:
    """Density of the reverse SDE ``dx = -2 sigma s dsigma + sqrt(2 sigma) dW`` on a 1-D grid.

    Solves ``dq/dtau = -d/dx(2 sigma s q) + sigma q''`` (``tau = -sigma``) from ``sigmas[0]``
    down to ``sigmas[-1]``: the advection as in :func:`continuity_1d` with the drift
    ``2 sigma s`` (CFL checked on it), the diffusion by Crank-Nicolson half steps (banded
    tridiagonal solves) in a Strang splitting.

    Parameters
    ----------
    q0, grid, sigmas, score_fn, dsigma
        As in :func:`continuity_1d`.

    Returns
    -------
    GridMarginals

    Raises
    ------
    TypeError, ValueError
        As in :func:`continuity_1d` (the CFL condition on the drift ``2 sigma s``).

    Warns
    -----
    RuntimeWarning
        As in :func:`continuity_1d`.
    """
    return _propagate(q0, [(grid, "grid")], sigmas, score_fn, dsigma, diffusion=True)

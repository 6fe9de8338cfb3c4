"""Uniform measure along a parametrised curve, with its noised density, score and denoiser.

``x0 = gamma(t)`` with ``t`` in ``[a, b]`` distributed so that ``x0`` is uniform in arc length
(or, with ``measure="parameter"``, uniform in ``t``). The noised density is a one-dimensional
integral,

    p_sigma(x) = (1/Omega) int_a^b N(x; gamma(t), sigma^2 I) omega(t) dt,

with ``omega = |gamma'|`` and ``Omega = L`` (arc length) or ``omega = 1`` and ``Omega = b - a``.
It is computed by quadrature with a per-point error estimate; ``docs/targets.md`` (section Curves)
derives the scheme and tabulates its measured errors against closed forms.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor
from torch.func import jvp

from .._checks import DEFAULT_DTYPE, as_float_tensor, check_positive_int
from .base import Target

GAUSS_NODES = 8         # Gauss-Legendre nodes per panel
TABLE_CELLS = 4096      # cells of the arc-length table (uniform in t)
ZOOM_SPLIT = 16         # sub-cells per window and zoom level
MAX_WINDOWS = 16        # windows per row; more separate runs are merged across the smallest gaps
MAX_ZOOM_LEVELS = 40
KAPPA_SAFETY = 1.25     # on the curvature sampled at the table nodes
NODE_BUDGET = 1 << 21   # quadrature nodes (times dim) held in memory at once


@dataclass(frozen=True)
class QuadratureError:
    """Estimated quadrature errors of ``Curve`` at each point.

    Attributes
    ----------
    log_prob : Tensor of shape ``(n,)``
        Absolute error of ``log p_sigma(x)``, i.e. the relative error of the density.
    denoise : Tensor of shape ``(n,)``
        Euclidean error of ``D(x, sigma)``.
    score : Tensor of shape ``(n,)``
        Euclidean error of the score ``(D - x) / sigma^2``: ``(denoise + 2 eps (|x| + |D|)) /
        sigma^2``, the second term the rounding of the subtraction and division.
    panels : Tensor of shape ``(n,)``
        Gauss-Legendre panels per window in the returned (finer) rule.
    """

    log_prob: Tensor
    denoise: Tensor
    score: Tensor
    panels: Tensor


class QuadratureWarning(UserWarning):
    """The quadrature reached ``max_panels`` before meeting ``tol``."""


class Curve(Target):
    r"""Uniform measure on a curve ``gamma: [a, b] -> R^d``, noised exactly by quadrature.

    ``p_sigma(x) = (1/L) int_a^b N(x; gamma(t), sigma^2 I) |gamma'(t)| dt``, ``L = int |gamma'|``;
    score ``int w(t|x) (gamma(t) - x) dt / sigma^2`` and denoiser ``D = int w(t|x) gamma(t) dt``
    with ``w(t|x)`` the posterior over ``t``. Sampling is exact: ``t = s^{-1}(u L)`` by the
    arc-length table, polished by Newton steps on ``s(t)`` to rounding.

    Quadrature, vectorised over the batch and in log space throughout: (i) a grid of
    ``grid_size`` equal arc-length cells finds, per point, the runs of cells that may hold
    mass, by a lower bound on ``|x - gamma|^2`` in each cell (``|f''| <= 2 (1 + |x - gamma|
    kappa_max)`` plus rounding); (ii) each run is zoomed (16 sub-cells per level, same bound)
    until it stops shrinking; (iii) each window gets composite Gauss-Legendre, 8 nodes per
    panel, with ``P`` and ``2P`` panels, ``P`` doubling per point until the two agree. Values
    are from the ``2P`` rule.

    Error bound (``quadrature_error``): ``|Delta log p| <= |log Z_2P - log Z_P| + eps_tail +
    rounding`` and ``|Delta D| <= |D_2P - D_P| + eps_tail L + rounding``; ``eps_tail = 1e-6 tol
    min(sigma, L) / L`` bounds the relative mass outside the windows (a proven bound, given the
    sampled curvature), ``rounding`` is the part no rule removes (``_errors``). Refinement stops
    once ``|log Z_2P - log Z_P| <= tol`` and ``|D_2P - D_P| <= tol * max(min(sigma, L), |x -
    D|)`` (score relative error ``<= tol``), or at the rounding floor; ``tol`` is raised to
    ``100 eps`` of the input dtype. Tested against Bessel closed forms (circle) and
    ``scipy.integrate.quad_vec`` for ``sigma`` in ``[1e-4, 1e3]``.

    Parameters
    ----------
    gamma : callable
        Maps ``t`` of shape ``(n,)`` to points of shape ``(n, d)``, row ``i`` depending on
        ``t[i]`` only, in ``t``'s dtype and device; differentiable by torch (forward mode is
        used when it works, else reverse mode). Must be a regular curve (``|gamma'| > 0``).
    t_range : (float, float)
        Finite parameter interval ``(a, b)`` with ``a < b``.
    dim : int, optional
        Ambient dimension ``d``; checked against ``gamma``'s output when given.
    closed : bool
        Declares ``gamma(a) = gamma(b)`` (checked); the seam is an ordinary panel boundary.
    measure : {"arclength", "parameter"}
        ``x0`` uniform in arc length (default) or ``t`` uniform on ``[a, b]`` (then ``omega =
        1`` replaces ``|gamma'|`` and ``b - a`` replaces ``L``).
    tol : float
        Target accuracy, in ``(0, 1)`` (see above).
    grid_size : int, optional
        Cells of the localisation grid; default ``8 L kappa_max`` rounded up to a power of
        two, within ``[128, 2^14]``.
    panels, max_panels : int
        Initial and maximal Gauss-Legendre panels per window; reaching ``max_panels`` short of
        ``tol`` raises a ``QuadratureWarning``.

    References
    ----------
    Davis & Rabinowitz, *Methods of Numerical Integration* (1984), Sec. 2.7 and 4.8 (Gauss-
    Legendre remainder, error estimates by comparing rules). Karras et al., *Elucidating the
    Design Space of Diffusion-Based Generative Models* (2022), for the denoiser convention.

    Examples
    --------
    >>> roll = Curve.swiss_roll()
    >>> x = roll.sample_noised(4, 0.1, torch.Generator().manual_seed(0))
    >>> roll.denoise(x, 0.1).shape
    torch.Size([4, 2])
    >>> bool((roll.quadrature_error(x, 0.1).log_prob < 1e-8).all())
    True
    """

    has_density = False

    def __init__(self, gamma: Callable[[Tensor], Tensor], t_range: Any, dim: int | None = None,
                 *, closed: bool = False, measure: str = "arclength", tol: float = 1e-8,
                 grid_size: int | None = None, panels: int = 8, max_panels: int = 512) -> None:
        super().__init__()
        self._t_range = _check_t_range(t_range)
        if measure not in ("arclength", "parameter"):
            raise ValueError(f"measure must be 'arclength' or 'parameter', got {measure!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < 1:
            raise ValueError(f"tol must be a float in (0, 1), got {tol!r}")
        if not isinstance(closed, bool):
            raise TypeError(f"closed must be a bool, got {type(closed).__name__}")
        self.panels = check_positive_int(panels, "panels")
        self.max_panels = check_positive_int(max_panels, "max_panels", minimum=2 * self.panels)
        self.measure, self.tol, self.closed = measure, float(tol), closed
        self._gamma = gamma
        self.dim = _probe_gamma(gamma, self._t_range, dim)
        self._forward_ad = _supports_forward_ad(gamma, self._t_range)
        self._build_tables(grid_size)
        if closed:
            self._check_closed()

    # ------------------------------------------------------------------ factories
    @classmethod
    def circle(cls, radius: float = 1.0, ambient_dim: int = 2, **options: Any) -> "Curve":
        """Circle ``(R cos t, R sin t)``, ``t`` in ``[0, 2 pi]``, in the first two coordinates.

        Its noised density is known through Bessel functions, ``p_sigma ~ exp(-(r - R)^2 /
        (2 sigma^2)) I_0e(R r / sigma^2)`` (``docs/MATH_NOTES``): the tests' independent check.
        """
        r = _positive_float(radius, "radius")
        ambient_dim = check_positive_int(ambient_dim, "ambient_dim", minimum=2)

        def gamma(t: Tensor) -> Tensor:
            return _pad(torch.stack([r * torch.cos(t), r * torch.sin(t)], -1), ambient_dim)

        return cls(gamma, (0.0, 2 * math.pi), ambient_dim, closed=True, **options)

    @classmethod
    def helix(cls, radius: float = 1.0, pitch: float = 1.0, turns: float = 3.0,
              ambient_dim: int = 3, **options: Any) -> "Curve":
        """Helix ``(R cos t, R sin t, pitch t / (2 pi))``, ``t`` in ``[0, 2 pi turns]``.

        Length ``turns * sqrt((2 pi R)^2 + pitch^2)`` (19.1 for the defaults).
        """
        r, c = _positive_float(radius, "radius"), _positive_float(pitch, "pitch")
        turns = _positive_float(turns, "turns")
        ambient_dim = check_positive_int(ambient_dim, "ambient_dim", minimum=3)

        def gamma(t: Tensor) -> Tensor:
            coords = [r * torch.cos(t), r * torch.sin(t), (c / (2 * math.pi)) * t]
            return _pad(torch.stack(coords, -1), ambient_dim)

        return cls(gamma, (0.0, 2 * math.pi * turns), ambient_dim, **options)

    @classmethod
    def swiss_roll(cls, turns: float = 1.5, start: float = 1.5 * math.pi, scale: float = 1.0,
                   **options: Any) -> "Curve":
        """The classic 2-D swiss-roll spiral ``scale * (t cos t, t sin t)``.

        ``t`` in ``[start, start + 2 pi turns]``; the defaults are scikit-learn's
        ``make_swiss_roll`` range ``[1.5 pi, 4.5 pi]`` (length 89.37 * scale).
        """
        turns, scale = _positive_float(turns, "turns"), _positive_float(scale, "scale")
        start = _real(start, "start")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")

        def gamma(t: Tensor) -> Tensor:
            return scale * torch.stack([t * torch.cos(t), t * torch.sin(t)], -1)

        return cls(gamma, (start, start + 2 * math.pi * turns), 2, **options)

    # ------------------------------------------------------------------ public
    @property
    def t_range(self) -> tuple[float, float]:
        """The parameter interval ``(a, b)``."""
        return self._t_range

    @property
    def length(self) -> float:
        """Arc length ``L = int_a^b |gamma'(t)| dt``."""
        return self._length

    def arclength(self, t: Tensor) -> Tensor:
        """Arc length ``s(t) = int_a^t |gamma'|`` (table plus Gauss-Legendre in the last cell).

        Parameters
        ----------
        t : Tensor of shape ``(n,)``, entries in ``[a, b]``.

        Returns
        -------
        Tensor of shape ``(n,)`` in ``t``'s dtype, accurate to rounding.
        """
        t = as_float_tensor(t, "t")
        a, b = self._t_range
        if t.ndim != 1 or bool(((t < a) | (t > b)).any()):
            raise ValueError(f"t must have shape (n,) with entries in [{a}, {b}]")
        p = self._params(t)
        cell = _cell_index(p["tab_t"], t)
        return self._arclength_in_cell(t, cell, p)

    def quadrature_error(self, x: Tensor, sigma: float | Tensor) -> QuadratureError:
        """Error bounds of ``log_prob``, ``denoise`` and ``score`` at ``(x, sigma)``.

        ``|log Z_2P - log Z_P| + eps_tail + rounding`` for ``log p`` and ``|D_2P - D_P| +
        eps_tail L + rounding`` for ``D`` (see the class docstring); for the score ``(D - x) /
        sigma^2``, ``(err_D + 2 eps (|x| + |D|)) / sigma^2`` with ``eps`` of ``x``'s dtype.

        Parameters
        ----------
        x : Tensor of shape ``(n, dim)``
        sigma : float or Tensor of shape ``(n,)``, ``> 0``

        Returns
        -------
        QuadratureError of ``(n,)`` tensors.
        """
        x, s = self._validate(x, sigma, need_density=True, what="quadrature_error")

        def errors(xc: Tensor, sc: Tensor) -> Tensor:
            _, d, err_log_z, err_d, panels = self._quadrature(xc, sc)
            # The score is fl(fl(D - x) / fl(sigma^2)): three roundings of relative eps/2 per
            # coordinate, so its rounding is <= 1.5 eps |D - x| (1 + O(eps)) <= 2 eps (|x| + |D|)
            # (the 4/3 margin absorbs the O(eps) terms). At large sigma, where |D - x| ~ |x| and
            # err_D is tiny, this term dominates.
            round_score = 2 * torch.finfo(xc.dtype).eps * (xc.norm(dim=-1) + d.norm(dim=-1))
            return torch.stack([err_log_z, err_d, err_d + round_score, panels], -1)

        with torch.no_grad():
            out = self._chunked(errors, x, s)
        return QuadratureError(log_prob=out[:, 0], denoise=out[:, 1],
                               score=out[:, 2] / s ** 2, panels=out[:, 3].round().long())

    def __repr__(self) -> str:
        a, b = self._t_range
        return (f"Curve(dim={self.dim}, t_range=({a:g}, {b:g}), length={self._length:.6g}, "
                f"measure={self.measure!r}, closed={self.closed})")

    # ------------------------------------------------------------------ Target hooks
    def _sample(self, n: int, generator: torch.Generator | None, like: Tensor) -> Tensor:
        u = torch.rand(n, generator=generator, dtype=like.dtype, device=like.device)
        a, b = self._t_range
        if self.measure == "parameter":
            t = a + (b - a) * u
        else:
            t = self._parameter_at(u * self._length, self._params(like))
        return self._gamma(t).to(like.dtype)

    def _log_prob(self, x: Tensor, sigma: Tensor) -> Tensor:
        log_z = self._quadrature(x, sigma)[0]
        return log_z - self._log_total - 0.5 * self.dim * torch.log(2 * math.pi * sigma ** 2)

    def _denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        return self._quadrature(x, sigma)[1]

    # ------------------------------------------------------------------ construction
    def _build_tables(self, grid_size: int | None) -> None:
        """Arc-length table, geometric bounds and the localisation grid, all float64."""
        a, b = self._t_range
        gl_x, gl_w = (torch.as_tensor(v, dtype=DEFAULT_DTYPE)
                      for v in np.polynomial.legendre.leggauss(GAUSS_NODES))
        # h from (b - a), not from a difference of rounded knots: that would carry a
        # relative error eps |a| / h into the length.
        h = (b - a) / TABLE_CELLS
        cells = torch.arange(TABLE_CELLS, dtype=DEFAULT_DTYPE)
        nodes = (a + h * (cells[:, None] + (gl_x + 1) / 2)).reshape(-1)
        tab_t = torch.cat([a + h * cells, torch.tensor([b], dtype=DEFAULT_DTYPE)])
        g, v = self._velocity(nodes)
        speed = v.norm(dim=-1).reshape(TABLE_CELLS, GAUSS_NODES)
        if not bool(torch.isfinite(g).all() & torch.isfinite(speed).all()):
            raise ValueError("gamma must be finite with a finite derivative on t_range")
        if float(speed.min()) <= 1e-12 * float(speed.max()):
            raise ValueError("gamma must be a regular curve, |gamma'(t)| > 0 on t_range; "
                             f"got min |gamma'| = {float(speed.min()):.3g}")
        tab_s = _prefix_sums(h / 2 * (speed @ gl_w))
        self._register(tab_t=tab_t, tab_s=tab_s, gl_x=gl_x, gl_w=gl_w)
        self._length = float(tab_s[-1])
        self._set_bounds(g, v, speed, speed @ gl_w / 2)
        self._build_grid(grid_size)

    def _set_bounds(self, g: Tensor, v: Tensor, speed: Tensor, mean_speed: Tensor) -> None:
        """Geometric constants of the localisation and error bounds, from the table nodes."""
        a, b = self._t_range
        # Chord estimate of the curvature: |change of unit tangent| / |change of position|.
        tangent = v / v.norm(dim=-1, keepdim=True)
        kappa = (tangent.diff(dim=0).norm(dim=-1) / g.diff(dim=0).norm(dim=-1)).max()
        self._kappa = KAPPA_SAFETY * float(kappa)
        # Sub-cell arc lengths come from linear interpolation of s(t); this factor makes
        # them upper bounds (max over the table cells of max speed / mean speed).
        self._ds_inflation = 1e-3 + float((speed.amax(1) / mean_speed).max())
        self._radius = float(g.norm(dim=-1).max())
        self._node_scale = max(abs(a), abs(b)) * float(speed.max())
        # log of the normaliser Omega and of Omega / min omega (omega per unit arc length).
        if self.measure == "arclength":
            self._log_total = self._log_mass_ratio = math.log(self._length)
        else:
            self._log_total = math.log(b - a)
            self._log_mass_ratio = math.log((b - a) * float(speed.max()))

    def _build_grid(self, grid_size: int | None) -> None:
        """The localisation grid: ``grid_size`` cells of equal arc length."""
        if grid_size is None:
            grid_size = min(1 << 14, max(128, 1 << math.ceil(math.log2(
                8 * self._length * self._kappa + 1))))
        grid_size = check_positive_int(grid_size, "grid_size", minimum=2)
        s_grid = torch.linspace(0, self._length, grid_size + 1, dtype=DEFAULT_DTYPE)
        grid_t = self._parameter_at(s_grid, self._params(s_grid))
        grid_t[0], grid_t[-1] = self._t_range
        self._grid_ds = self._length / grid_size
        self._register(grid_t=grid_t, grid_gamma=self._gamma(grid_t).to(DEFAULT_DTYPE))
        # Bound memory by the localisation grid, the largest per-row tensor.
        self.chunk_size = max(16, NODE_BUDGET // ((grid_size + 1) * self.dim))

    def _check_closed(self) -> None:
        a, b = self._t_range
        ends = self._gamma(torch.tensor([a, b], dtype=DEFAULT_DTYPE))
        gap = float((ends[0] - ends[1]).norm())
        if gap > 1e-9 * (1 + self._radius):
            raise ValueError(f"closed=True requires gamma(a) == gamma(b); the gap is {gap:.3g}")

    # ------------------------------------------------------------------ curve geometry
    def _velocity(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``gamma(t)`` and ``gamma'(t)``, both ``(n, d)``, without a graph to ``t``."""
        t = t.detach()
        if self._forward_ad:
            g, v = jvp(self._gamma, (t,), (torch.ones_like(t),))
            return g.detach(), v.detach()
        with torch.enable_grad():
            tt = t.requires_grad_(True)
            g = self._gamma(tt)
            cols = [torch.autograd.grad(g[:, j].sum(), tt, retain_graph=True,
                                        allow_unused=True)[0] for j in range(g.shape[1])]
        v = torch.stack([c if c is not None else torch.zeros_like(t) for c in cols], -1)
        return g.detach(), v.detach()

    def _points_and_log_weight(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """``gamma(t)`` and ``log omega(t)`` (``log |gamma'|`` or 0) for a flat ``t``."""
        if self.measure == "parameter":
            with torch.no_grad():
                return self._gamma(t), torch.zeros_like(t)
        g, v = self._velocity(t)
        return g, torch.log(v.norm(dim=-1))

    def _arclength_in_cell(self, t: Tensor, cell: Tensor, p: dict[str, Tensor]) -> Tensor:
        """``s(t)`` as the table value at the cell start plus Gauss-Legendre over the rest."""
        t0 = p["tab_t"][cell]
        half = (t - t0) / 2
        nodes = t0[:, None] + half[:, None] * (p["gl_x"] + 1)
        speed = self._velocity(nodes.reshape(-1))[1].norm(dim=-1).reshape(nodes.shape)
        return p["tab_s"][cell] + half * (speed @ p["gl_w"])

    def _parameter_at(self, s: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Inverse of ``s(t)``: table interpolation polished by Newton steps within the cell."""
        tab_t, tab_s = p["tab_t"], p["tab_s"]
        cell = _cell_index(tab_s, s)
        lo, hi = tab_t[cell], tab_t[cell + 1]
        t = _interp(s, tab_s, tab_t)
        # Newton converges quadratically from the interpolant (relative error ~ h^2 ~ 1e-7
        # for smooth speeds); two steps reach rounding in float64.
        for _ in range(2):
            speed = self._velocity(t)[1].norm(dim=-1)
            t = torch.minimum(torch.maximum(
                t - (self._arclength_in_cell(t, cell, p) - s) / speed, lo), hi)
        return t

    # ------------------------------------------------------------------ quadrature
    def _quadrature(self, x: Tensor, sigma: Tensor) -> tuple[Tensor, ...]:
        """``log Z``, ``D``, their error estimates and the panel count, for each row.

        ``Z = int exp(-|x - gamma(t)|^2 / (2 sigma^2)) omega(t) dt``.
        """
        p = self._params(x)
        eps = torch.finfo(x.dtype).eps
        tol = max(self.tol, 100 * eps)
        m = x.shape[0]
        with torch.no_grad():
            # Relative tail mass; times the diameter (<= L) it is 1e-6 tol min(sigma, L) in D.
            eps_tail = 1e-6 * tol * sigma.detach().clamp(max=self._length) / self._length
            row, lo, hi = self._windows(x.detach(), sigma.detach(), eps_tail, p)
            extent = _window_extent(row, lo, hi, m, p) * self._ds_inflation
        pending = torch.arange(m, device=x.device)
        coarse = self._rule(x, sigma, row, lo, hi, self.panels, p)
        done_parts: list[tuple[Tensor, ...]] = []
        last = int(math.log2(self.max_panels / (2 * self.panels)))
        for level in range(last + 1):
            n_panels = 2 * self.panels << level
            compact = torch.full((m,), -1, dtype=torch.long, device=x.device)
            compact[pending] = torch.arange(len(pending), device=x.device)
            keep = compact[row] >= 0
            fine = self._rule(x[pending], sigma[pending], compact[row[keep]], lo[keep],
                              hi[keep], n_panels, p)
            ok, err_log_z, err_d = self._errors(x[pending], sigma[pending], coarse, fine,
                                                eps_tail[pending], extent[pending], tol)
            if level == last and not bool(ok.all()):
                warnings.warn(f"Curve quadrature: {int((~ok).sum())} point(s) reached "
                              f"max_panels={self.max_panels} before meeting tol={tol:.1e}; "
                              "raise max_panels or tol (see quadrature_error)",
                              QuadratureWarning, stacklevel=4)
                ok = torch.ones_like(ok)
            panels = torch.full_like(err_log_z, float(n_panels))
            done_parts.append((pending[ok], fine[0][ok], fine[1][ok], err_log_z[ok],
                               err_d[ok], panels[ok]))
            pending, coarse = pending[~ok], tuple(column[~ok] for column in fine)
            if not pending.numel():
                break
        order, log_z, d, err_log_z, err_d, panels = (torch.cat(parts)
                                                     for parts in zip(*done_parts))
        inverse = torch.argsort(order)
        return (log_z[inverse], d[inverse], err_log_z[inverse], err_d[inverse],
                panels[inverse].to(x.dtype))

    def _errors(self, x: Tensor, sigma: Tensor, coarse: tuple[Tensor, ...],
                fine: tuple[Tensor, ...], eps_tail: Tensor, extent: Tensor,
                tol: float) -> tuple[Tensor, Tensor, Tensor]:
        """Whether the ``fine`` rule meets ``tol``, and its error estimates.

        Estimate = difference from the ``coarse`` rule (half the panels) + tail bound +
        rounding. A node ``t`` is rounded by ``eps T`` (``T = max(|a|, |b|)``), moving
        ``gamma(t)`` by ``eps T v_max``; ``gamma(t)`` carries an error ``eps |gamma|`` and ``x -
        gamma`` one of ``eps |x|``. So each log-integrand is off by up to ``delta = eps (|x| +
        R + T v_max) (|x - D| + spread) / sigma^2`` (``R = max |gamma|``, ``spread`` the
        posterior mean of ``|gamma - D|``). That moves ``log Z`` by ``delta`` and ``D`` by
        ``delta * spread`` to first order; once ``delta >~ 1`` (float32 far from the curve at
        small sigma) the computed posterior may sit anywhere in the windows, hence the
        ``min(delta^2, 1) * extent`` term (``extent`` the arc length spanned by the windows).
        ``log Z`` also carries ``4 eps |log Z|`` and ``D`` a summation error ``8 eps R``.
        """
        with torch.no_grad():
            log_z, d, spread = (column.detach() for column in fine)
            eps = torch.finfo(x.dtype).eps
            distance = (x - d).norm(dim=-1)
            delta = eps * (x.norm(dim=-1) + self._radius + self._node_scale) \
                * (distance + spread) / sigma ** 2
            round_log_z = delta + 4 * eps * (1 + log_z.abs() + abs(self._log_total)
                                             + 0.5 * self.dim * torch.log(
                                                 2 * math.pi * sigma ** 2).abs())
            round_d = delta * spread + delta.square().clamp(max=1) * extent \
                + 8 * eps * self._radius
            diff_log_z = (log_z - coarse[0].detach()).abs()
            diff_d = (d - coarse[1].detach()).norm(dim=-1)
            scale = torch.maximum(sigma.clamp(max=self._length), distance)
            ok = ((diff_log_z <= torch.clamp(4 * round_log_z, min=tol))
                  & (diff_d <= torch.maximum(tol * scale, 4 * round_d)))
            return (ok, diff_log_z + eps_tail + round_log_z,
                    diff_d + eps_tail * self._length + round_d)

    def _windows(self, x: Tensor, sigma: Tensor, eps_tail: Tensor,
                 p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Parameter windows ``[lo, hi]`` of rows ``row`` (flat ``(k,)`` tensors) that hold all
        but a relative ``eps_tail`` of the mass of each row's integrand."""
        eps = torch.finfo(x.dtype).eps
        f = torch.cdist(x, p["grid_gamma"], compute_mode="donot_use_mm_for_euclid_dist") ** 2
        f_min = f.amin(1)
        # Mass outside {f <= f_min + 2 sigma^2 K} is < eps_tail of the total: the total is at
        # least omega_min e^-1.5 min(L/2, sigma^2 / (d + sigma)) e^(-f*/2sigma^2), because
        # |x - gamma(s)| <= d* + |s - s*| (docs, "Error bound").
        near = torch.clamp(sigma ** 2 / (f_min.sqrt() + sigma), max=self._length / 2)
        k = 1.5 + self._log_mass_ratio - torch.log(near * eps_tail)
        budget = 2 * sigma ** 2 * k
        rounding = 8 * eps * (x.norm(dim=-1) + self._radius)
        ds = torch.full_like(f[:, 1:], self._grid_ds)
        active = _cell_lower_bound(f, ds, self._kappa, rounding[:, None]) <= (
            f_min + budget + rounding * f_min.sqrt())[:, None]
        lo_idx, hi_idx, valid = _runs(active, MAX_WINDOWS)
        row = torch.nonzero(valid)[:, 0]
        lo, hi = p["grid_t"][lo_idx[valid]], p["grid_t"][hi_idx[valid]]
        return self._zoom(x, row, lo, hi, f_min, budget, rounding, p)

    def _zoom(self, x: Tensor, row: Tensor, lo: Tensor, hi: Tensor, f_min: Tensor,
              budget: Tensor, rounding: Tensor,
              p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Shrink each window to the span of its sub-cells that may hold mass, until it stops
        shrinking; drop windows with none."""
        eps = torch.finfo(x.dtype).eps
        a, b = self._t_range
        min_width = 64 * eps * max(abs(a), abs(b), b - a)
        u = torch.linspace(0, 1, ZOOM_SPLIT + 1, dtype=x.dtype, device=x.device)
        alive = torch.ones_like(row, dtype=torch.bool)
        moving = alive.clone()
        for _ in range(MAX_ZOOM_LEVELS):
            idx = torch.nonzero(moving)[:, 0]
            if not idx.numel():
                break
            r, w_lo, w_hi = row[idx], lo[idx], hi[idx]
            edges = w_lo[:, None] + (w_hi - w_lo)[:, None] * u
            edges[:, -1] = w_hi
            ds = _interp(edges, p["tab_t"], p["tab_s"]).diff(dim=-1) * self._ds_inflation \
                + 4 * eps * self._length
            g = self._gamma(edges.reshape(-1)).reshape(*edges.shape, self.dim)
            f = ((x[r][:, None, :] - g) ** 2).sum(-1)
            f_min = f_min.scatter_reduce(0, r, f.amin(1), "amin")
            threshold = (f_min + budget + rounding * f_min.sqrt())[r]
            active = _cell_lower_bound(f, ds, self._kappa, rounding[r, None]) \
                <= threshold[:, None]
            has = active.any(-1)
            first = active.to(torch.int8).argmax(-1, keepdim=True)
            last = ZOOM_SPLIT - active.flip(-1).to(torch.int8).argmax(-1, keepdim=True)
            new_lo, new_hi = edges.gather(-1, first)[:, 0], edges.gather(-1, last)[:, 0]
            update = has & (new_hi - new_lo >= min_width)
            lo[idx] = torch.where(update, new_lo, w_lo)
            hi[idx] = torch.where(update, new_hi, w_hi)
            alive[idx] = has
            moving[idx] = update & (new_hi - new_lo < 0.9 * (w_hi - w_lo))
        return row[alive], lo[alive], hi[alive]

    def _rule(self, x: Tensor, sigma: Tensor, row: Tensor, lo: Tensor, hi: Tensor,
              n_panels: int, p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Composite Gauss-Legendre ``log Z``, ``D`` and the posterior spread ``E |gamma - D|``
        of each row of ``x``, summed over its windows ``row == i`` with ``n_panels`` each."""
        per_window = self._window_rule(x[row], sigma[row], lo, hi, n_panels, p)
        return _combine_windows(*per_window, row, x.shape[0])

    def _window_rule(self, x: Tensor, sigma: Tensor, lo: Tensor, hi: Tensor, n_panels: int,
                     p: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``log Z``, ``D`` and spread of one window per row of ``x`` (``lo``, ``hi`` ``(k,)``)."""
        k = lo.shape[0]
        rows = max(1, NODE_BUDGET // (n_panels * GAUSS_NODES * self.dim))
        if k > rows:
            parts = [self._window_rule(x[i:i + rows], sigma[i:i + rows], lo[i:i + rows],
                                       hi[i:i + rows], n_panels, p) for i in range(0, k, rows)]
            return tuple(torch.cat(column) for column in zip(*parts))
        u = torch.linspace(0, 1, n_panels + 1, dtype=x.dtype, device=x.device)
        edges = lo[:, None] + (hi - lo)[:, None] * u                   # (k, P + 1)
        start, h = edges[:, :-1, None], edges.diff(dim=-1)[..., None]
        t = (start + h * (p["gl_x"] + 1) / 2).reshape(k, -1)           # (k, P * n)
        g, log_omega = self._points_and_log_weight(t.reshape(-1))
        g = g.reshape(k, -1, self.dim)
        log_w = torch.log(h * p["gl_w"] / 2).reshape(k, -1) + log_omega.reshape(k, -1)
        log_terms = log_w - ((x[:, None, :] - g) ** 2).sum(-1) / (2 * sigma[:, None] ** 2)
        posterior = torch.softmax(log_terms, 1)
        d = torch.einsum("kn,knd->kd", posterior, g)
        with torch.no_grad():
            spread = (posterior * (g - d[:, None, :]).norm(dim=-1)).sum(1)
        return torch.logsumexp(log_terms, 1), d, spread


# ---------------------------------------------------------------------- helpers
def _combine_windows(log_z: Tensor, d: Tensor, spread: Tensor, row: Tensor,
                     m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Sum window integrals per row in log space: ``log Z_i = logsumexp_{w in i} log Z_w``,
    ``D_i`` the ``Z_w``-weighted mean of the ``D_w``; the spread is bounded above."""
    shift = torch.full((m,), -math.inf, dtype=log_z.dtype, device=log_z.device)
    shift = shift.scatter_reduce(0, row, log_z.detach(), "amax")
    weight = torch.exp(log_z - shift[row])
    total = weight.new_zeros(m).index_add(0, row, weight)
    share = weight / total[row]
    d_row = d.new_zeros(m, d.shape[1]).index_add(0, row, share[:, None] * d)
    with torch.no_grad():
        spread_row = spread.new_zeros(m).index_add(
            0, row, share * (spread + (d - d_row[row]).norm(dim=-1)))
    return shift + torch.log(total), d_row, spread_row


def _window_extent(row: Tensor, lo: Tensor, hi: Tensor, m: int,
                   p: dict[str, Tensor]) -> Tensor:
    """Arc length from the first window's start to the last window's end, per row."""
    s_lo, s_hi = _interp(lo, p["tab_t"], p["tab_s"]), _interp(hi, p["tab_t"], p["tab_s"])
    first = torch.full((m,), math.inf, dtype=lo.dtype, device=lo.device)
    last = torch.full((m,), -math.inf, dtype=lo.dtype, device=lo.device)
    return last.scatter_reduce(0, row, s_hi, "amax") - first.scatter_reduce(0, row, s_lo, "amin")


def _cell_lower_bound(f: Tensor, ds: Tensor, kappa: float, rounding: Tensor) -> Tensor:
    """Lower bound of ``f = |x - gamma|^2`` on each cell from its end values.

    ``|f''(s)| <= 2 (1 + |x - gamma| kappa)`` in arc length, so ``f`` stays within
    ``ds^2/8 max|f''|`` of its chord; ``rounding * |x - gamma|`` covers rounding in ``f``.
    """
    d_max = torch.maximum(f[..., :-1], f[..., 1:]).sqrt() + ds
    slack = ds ** 2 / 4 * (1 + d_max * kappa) + rounding * d_max
    return torch.minimum(f[..., :-1], f[..., 1:]) - slack


def _runs(active: Tensor, max_runs: int) -> tuple[Tensor, Tensor, Tensor]:
    """Maximal runs of ``True`` cells in each row of ``active`` ``(m, G)``.

    Returns ``(lo, hi, valid)`` of shape ``(m, M)``: run ``k`` covers cells ``lo..hi-1`` (so
    ``lo``/``hi`` index the cell edges). Rows with more than ``max_runs`` runs are merged
    across their smallest gaps.
    """
    off = torch.zeros_like(active[:, :1])
    start = active & ~torch.cat([off, active[:, :-1]], 1)
    end = active & ~torch.cat([active[:, 1:], off], 1)
    count = start.sum(1)
    runs = max(1, int(count.max()))
    run_id = start.cumsum(1) - 1
    lo = torch.zeros(active.shape[0], runs, dtype=torch.long, device=active.device)
    hi = torch.zeros_like(lo)
    r, c = torch.nonzero(start, as_tuple=True)
    lo[r, run_id[r, c]] = c
    r, c = torch.nonzero(end, as_tuple=True)
    hi[r, run_id[r, c]] = c + 1
    valid = torch.arange(runs, device=active.device) < count[:, None]
    if runs > max_runs:
        lo, hi, valid = _merge_runs(lo, hi, valid, max_runs)
    return lo, hi, valid


def _merge_runs(lo: Tensor, hi: Tensor, valid: Tensor,
                max_runs: int) -> tuple[Tensor, Tensor, Tensor]:
    """Keep the ``max_runs - 1`` widest gaps of each row and fill the others."""
    gaps = torch.where(valid[:, 1:], lo[:, 1:] - hi[:, :-1], -1)
    keep = torch.zeros_like(valid[:, 1:])
    keep.scatter_(1, gaps.topk(max_runs - 1, dim=1).indices, True)
    keep &= valid[:, 1:]
    group = torch.cat([torch.zeros_like(lo[:, :1]), keep.long().cumsum(1)], 1)
    big = int(hi.max()) + 1
    new_lo = torch.full_like(lo[:, :max_runs], big).scatter_reduce(
        1, group, torch.where(valid, lo, big), "amin")
    new_hi = torch.full_like(hi[:, :max_runs], -1).scatter_reduce(
        1, group, torch.where(valid, hi, -1), "amax")
    new_valid = new_hi > new_lo
    return new_lo.clamp(max=big - 1) * new_valid, new_hi.clamp(min=0) * new_valid, new_valid


def _prefix_sums(v: Tensor) -> Tensor:
    """``[0, v0, v0 + v1, ...]`` with error ~ 2 eps * sum (a plain cumsum of 4096 cell lengths
    drifts by ~300 eps, visible in log p at large sigma): cumsums within blocks of 64, block
    offsets by exactly rounded ``math.fsum``."""
    block = 64
    blocks = torch.cat([v, v.new_zeros((-v.numel()) % block)]).reshape(-1, block)
    totals = [math.fsum(b) for b in blocks.tolist()]
    offsets = v.new_tensor([math.fsum(totals[:i]) for i in range(len(totals))])
    sums = (blocks.cumsum(1) + offsets[:, None]).reshape(-1)[:v.numel()]
    sums[-1] = math.fsum(totals)
    return torch.cat([v.new_zeros(1), sums])


def _cell_index(knots: Tensor, v: Tensor) -> Tensor:
    """Index ``i`` of the cell ``[knots[i], knots[i+1]]`` holding ``v`` (clamped)."""
    return (torch.searchsorted(knots, v.contiguous(), right=True) - 1).clamp(0, len(knots) - 2)


def _interp(v: Tensor, knots: Tensor, values: Tensor) -> Tensor:
    """Monotone piecewise-linear interpolation of ``(knots, values)`` at ``v``."""
    i = _cell_index(knots, v)
    k0, k1 = knots[i], knots[i + 1]
    w = ((v - k0) / (k1 - k0)).clamp(0, 1)
    return values[i] + w * (values[i + 1] - values[i])


def _pad(points: Tensor, ambient_dim: int) -> Tensor:
    """Append zero coordinates up to ``ambient_dim``."""
    extra = ambient_dim - points.shape[-1]
    return torch.cat([points, points.new_zeros(*points.shape[:-1], extra)], -1) if extra else points


def _real(value: Any, name: str) -> float:
    """A finite real number given as a Python number or a one-element tensor/array."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float, got bool")
    t = as_float_tensor(value, name)
    if t.numel() != 1:
        raise ValueError(f"{name} must be a single number, got shape {tuple(t.shape)}")
    return float(t)


def _positive_float(value: Any, name: str) -> float:
    v = _real(value, name)
    if not v > 0:
        raise ValueError(f"{name} must be a finite float > 0, got {value!r}")
    return v


def _check_t_range(t_range: Any) -> tuple[float, float]:
    t = as_float_tensor(t_range, "t_range")
    if t.shape != (2,):
        raise ValueError(f"t_range must be a pair (a, b), got shape {tuple(t.shape)}")
    a, b = float(t[0]), float(t[1])
    if not a < b:
        raise ValueError(f"t_range must satisfy a < b, got ({a}, {b})")
    return a, b


def _probe_gamma(gamma: Any, t_range: tuple[float, float], dim: int | None) -> int:
    """Call ``gamma`` once on a few parameters and return its output dimension."""
    if not callable(gamma):
        raise TypeError(f"gamma must be a callable t -> points, got {type(gamma).__name__}")
    t = torch.linspace(*t_range, 5, dtype=DEFAULT_DTYPE)
    try:
        out = gamma(t)
        one = gamma(t[2:3])
    except Exception as err:
        raise TypeError("gamma must map a float64 tensor t of shape (n,) to a tensor of "
                        f"shape (n, d); calling it raised {type(err).__name__}: {err}") from err
    if not isinstance(out, Tensor) or not out.is_floating_point():
        raise TypeError(f"gamma must return a floating torch.Tensor, got {type(out).__name__}"
                        + (f" of dtype {out.dtype}" if isinstance(out, Tensor) else ""))
    if out.dtype != t.dtype:
        raise TypeError(f"gamma must return t's dtype ({t.dtype} here), got {out.dtype}")
    if out.ndim != 2 or out.shape[0] != 5:
        raise ValueError("gamma must return shape (n, d) for t of shape (n,), got "
                         f"{tuple(out.shape)} for n = 5")
    if not torch.allclose(out[2:3], one, rtol=1e-12, atol=1e-12):
        raise ValueError("gamma must act row-wise: row i of gamma(t) may depend on t[i] only")
    if dim is not None and check_positive_int(dim, "dim") != out.shape[1]:
        raise ValueError(f"dim must equal gamma's output dimension {out.shape[1]}, got {dim}")
    return int(out.shape[1])


def _supports_forward_ad(gamma: Callable[[Tensor], Tensor], t_range: tuple[float, float]) -> bool:
    t = torch.linspace(*t_range, 3, dtype=DEFAULT_DTYPE)
    try:
        # torch's first jvp imports a module that warns about torch.jit.script; under an
        # error filter that import would fail and silently select the slower reverse mode.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            jvp(gamma, (t,), (torch.ones_like(t),))
        return True
    except Exception:  # forward mode is missing for some ops; reverse mode then serves
        return False

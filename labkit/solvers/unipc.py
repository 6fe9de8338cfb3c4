"""UniPC: the unified predictor-corrector multistep solver (Zhao et al. 2023), data prediction."""

from __future__ import annotations

import math
from numbers import Integral
from typing import Any

import torch
from torch import Tensor

from ._exponential import _SERIES_TERMS
from .._checks import check_bool, check_choice
from .base import CountingDenoiser, Solver, multistep_order

VARIANTS = ("bh1", "bh2")
_INV_FACTORIAL = [1.0 / math.factorial(j) for j in range(_SERIES_TERMS + 8)]

# Measured global orders (docs/solvers.md, tests/solvers/test_unipc.py), indexed by
# (order, corrector). The first-order first step caps UniP-3 at 2 and UniPC-3 at 3.
_MEASURED_ORDER = {(1, False): 1.0, (2, False): 2.0, (3, False): 2.0,
                   (1, True): 2.0, (2, True): 3.0, (3, True): 3.0}


def _phi(k: int, z: float) -> float:
    """``phi_k(z) = sum_{j>=0} z^j / (j + k)!`` for a float, as ``_exponential.phi`` computes it
    for tensors (series for ``|z| < 1``, closed form with ``expm1`` beyond)."""
    if abs(z) < 1:
        series = _INV_FACTORIAL[_SERIES_TERMS + k]
        for j in range(_SERIES_TERMS - 1, -1, -1):
            series = series * z + _INV_FACTORIAL[j + k]
        return series
    head = math.expm1(z) - sum(z ** j * _INV_FACTORIAL[j] for j in range(1, k))
    return head / z ** k


def _solve(a: list[list[float]], b: list[float]) -> list[float]:
    """``a^{-1} b`` for a small non-singular matrix, by Gaussian elimination with pivoting."""
    n = len(b)
    m = [row[:] + [rhs] for row, rhs in zip(a, b)]
    for c in range(n):
        piv = max(range(c, n), key=lambda r: abs(m[r][c]))
        m[c], m[piv] = m[piv], m[c]
        for r in range(c + 1, n):
            f = m[r][c] / m[c][c]
            m[r] = [u - f * v for u, v in zip(m[r], m[c])]
    out = [0.0] * n
    for r in range(n - 1, -1, -1):
        out[r] = (m[r][n] - sum(m[r][j] * out[j] for j in range(r + 1, n))) / m[r][r]
    return out


def unipc_weights(rks: list[float], h: float, variant: str) -> tuple[float, list[float]]:
    """``B(h)`` and the weights ``rho`` of UniPC's order conditions, in data prediction.

    ``rho`` solves ``sum_m rho_m r_m^(k-1) = b_k``, ``k = 1..K`` (``K = len(rks)``), with
    ``b_k = k! hh phi_{k+1}(hh) / B(h)``, ``hh = -h``, and ``B(h) = hh`` ("bh1") or
    ``expm1(hh)`` ("bh2") (Zhao et al. 2023, Eq. (11) and App. C). The official
    ``multistep_uni_pc_bh_update`` builds ``hh phi_{k+1}(hh)`` by the recursion
    ``hh phi_k(hh) / hh - 1 / k!``, which cancels for small ``h``; here ``phi`` is summed
    without cancellation and, for "bh2", ``hh`` is divided out exactly
    (``b_k = k! phi_{k+1}(hh) / phi_1(hh)``). Coefficients are computed in float64 from the
    grid alone.

    Parameters
    ----------
    rks : list of float
        ``r_m = (lambda_{s_m} - lambda_{s_0}) / h`` of the points used (``r = 1`` for the new
        point in the corrector), distinct and non-zero.
    h : float
        ``lambda_{next} - lambda_{current} > 0``.
    variant : {"bh1", "bh2"}

    Returns
    -------
    B : float
    rho : list of float, ``len(rks)``
    """
    hh = -h
    denom = 1.0 if variant == "bh1" else _phi(1, hh)
    b = [math.factorial(k) * _phi(k + 1, hh) / denom for k in range(1, len(rks) + 1)]
    rho = _solve([[r ** k for r in rks] for k in range(len(rks))], b)
    return (hh if variant == "bh1" else math.expm1(hh)), rho


class UniPC(Solver):
    """UniPC-p (Zhao et al. 2023): UniP-p predictor and UniC-p corrector, data prediction.

    With ``lambda_ = -log sigma``, ``h = lambda_{i+1} - lambda_i``, ``D_i = D(x_i, sigma_i)``
    (evaluated at the *predicted* ``x_i``), ``r_m = (lambda_{i-m} - lambda_i) / h`` and
    ``D1_m = (D_{i-m} - D_i) / r_m`` for ``m = 1..p-1``:

    UniP-p:  ``x_{i+1} = e^{-h} x^c_i - expm1(-h) D_i - B(h) sum_m rho^p_m D1_m``,

    with ``rho^p`` solving the first ``p - 1`` order conditions ``sum_m rho_m r_m^(k-1) = b_k``
    (``b_k = k! (-h) phi_{k+1}(-h) / B(h)``, see :func:`unipc_weights`), except
    ``rho^p = 1/2`` for ``p = 2`` as in the official code. At step ``i + 1`` the new
    ``D_{i+1}`` corrects the same step (UniC-p):

    ``x^c_{i+1} = e^{-h} x^c_i - expm1(-h) D_i - B(h) (sum_m rho^c_m D1_m + rho^c_p (D_{i+1} - D_i))``,

    with ``rho^c`` solving all ``p`` conditions (``r_p = 1``; ``rho^c = 1/2`` for ``p = 1``).
    ``B(h) = -h`` ("bh1") or ``expm1(-h)`` ("bh2"); the sign is that of the data-prediction
    form (``hh = -h`` in the official code). The corrector reuses the denoiser call of the
    next step, so one call per step; ``D_{i+1}`` is kept in the history although it was taken
    at the uncorrected point, as in the official code and diffusers. The corrector is not
    applied after the last step: a grid ending above 0 returns the last predictor output.

    ``p = min(order, history + 1)`` (the warm-up of the paper: lower orders while the history
    is short), via :func:`labkit.solvers.base.multistep_order`; ``lower_order_final`` caps it
    by the number of steps left. The step to ``sigma = 0`` returns ``D_i`` (the first-order
    step there; the correction of ``x_i`` would not change it, since ``e^{-h} = 0``). The
    history restarts at ``i = 0`` or when steps are not consecutive.

    **Declared order** (measured on the exact Gaussian flow and a Gaussian mixture,
    ``docs/solvers.md``): UniP-1 = DDIM: 1; UniP-2: 2; UniP-3: 2; UniPC-1: 2; UniPC-2: 3;
    UniPC-3: 3. The paper's theory gives UniC-p local error ``O(h^{p+2})`` (order ``p + 1``),
    which holds in the interior; the first step has only one point of history (UniP-1,
    local error ``O(h^2)``; with UniC-1 ``O(h^3)``), and that single error caps UniP-3 at 2
    and UniPC-3 at 3 globally.

    Parameters
    ----------
    order : int
        ``p`` in 1..3 (default 2).
    variant : {"bh2", "bh1"}
        ``B(h)``: ``expm1(-h)`` ("bh2", default, as diffusers) or ``-h`` ("bh1").
    corrector : bool
        Apply UniC after each step but the last (default True); ``False`` gives UniP alone.
    lower_order_final : bool
        Lower the order on the last steps (default False; diffusers defaults to True).

    References
    ----------
    Zhao, Bai, Rao, Zhou, Lu, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling
    of Diffusion Models", NeurIPS 2023, arXiv:2302.04867, Algorithms 2-3 and App. C (B(h));
    official ``uni_pc.py`` ``multistep_uni_pc_bh_update`` (wl-zhao/UniPC) and diffusers'
    ``UniPCMultistepScheduler`` (``predict_x0=True``).
    """

    name = "unipc"
    order = 3.0           # the default instance's (UniPC-2 with corrector); set per instance
    nfe_per_step = 1

    def __init__(self, order: int = 2, variant: str = "bh2", corrector: bool = True,
                 lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(order, bool) or not isinstance(order, Integral):
            raise TypeError(f"order must be an int in 1..3, got {order!r}")
        if not 1 <= order <= 3:
            raise ValueError(f"order must be in 1..3, got {order}")
        check_choice(variant, "variant", VARIANTS)
        check_bool(corrector, "corrector")
        check_bool(lower_order_final, "lower_order_final")
        self.solver_order = order = int(order)
        self.variant = variant
        self.corrector = corrector
        self.lower_order_final = lower_order_final
        self.order = _MEASURED_ORDER[(order, corrector)]
        self._last_i = -1
        # (lambda_, D) of previous steps, newest first, at most `order` of them.
        self._history: list[tuple[float, Tensor]] = []
        # What UniC needs at the next step: (x^c, lambda_, lambda_next, p) of this step.
        self._pending: tuple[Tensor, float, float, int] | None = None

    def __repr__(self) -> str:
        return (f"UniPC(order={self.solver_order}, variant={self.variant!r}, "
                f"corrector={self.corrector}, lower_order_final={self.lower_order_final})")

    def _update(self, x: Tensor, t: float, t_next: float, history: list[tuple[float, Tensor]],
                new: Tensor | None) -> Tensor:
        """The UniP step from ``(x, lambda_ = t)`` with ``history = [(t, D_i), ...]`` (its
        length is ``p``), or the UniC step if ``new`` (``D`` at ``t_next``) is given."""
        h = t_next - t
        den0 = history[0][1]
        x_next = math.exp(-h) * x - math.expm1(-h) * den0
        p = len(history)
        rks = [(t_m - t) / h for t_m, _ in history[1:]]
        d1s = [(den_m - den0) / r_m for r_m, (_, den_m) in zip(rks, history[1:])]
        if new is not None:
            rks.append(1.0)
            d1s.append(new - den0)               # r = 1 at the new point
        if not d1s:
            return x_next
        B, rhos = unipc_weights(rks, h, self.variant)
        if new is None and p == 2 or new is not None and p == 1:
            rhos = [0.5]                         # the official simplified UniP-2 / UniC-1
        return x_next - B * sum(rho * d1 for rho, d1 in zip(rhos, d1s))

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        if i == 0 or self._last_i != i - 1:
            self._history, self._pending = [], None
        self._last_i = i
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        if float(sigma_next) == 0:
            # The first-order step to sigma = 0 is D_i, whatever the corrected x_i.
            self._history, self._pending = [], None
            return denoised
        # Coefficients in float64 from the grid (as the official code's Python-float rks).
        t, t_next = -math.log(float(sigma)), -math.log(float(sigma_next))
        if self.corrector and self._pending is not None:
            # UniC-p for the previous step, with D_i at the predicted x_i.
            x_prev, t_prev, _, p_prev = self._pending
            x = self._update(x_prev, t_prev, t, self._history[:p_prev], denoised)
        self._history = [(t, denoised), *self._history][:self.solver_order]
        p = multistep_order(self.solver_order, len(self._history) - 1, i, len(sigmas) - 1,
                            self.lower_order_final)
        self._pending = (x, t, t_next, p)
        return self._update(x, t, t_next, self._history[:p], None)

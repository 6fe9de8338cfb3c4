"""Linear multistep (Adams-Bashforth on a variable sigma grid), as k-diffusion's ``sample_lms``."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from .._checks import check_bool
from .base import CountingDenoiser, Solver, StepHistory, multistep_order, ode_derivative

# Explicit Runge-Kutta tableaus (a, b, c) of order p with p stages, p = 1..4 (the fewest
# stages that reach order p): Euler, Heun, Kutta's third-order rule, the classical RK4
# (Hairer, Norsett, Wanner, "Solving ODEs I", Sec. II.1). ``LMSCorrected`` warms up with the
# tableau of its order.
WARMUP_TABLEAUS: dict[int, tuple[list[list[float]], list[float], list[float]]] = {
    1: ([[]], [1.0], [0.0]),
    2: ([[], [1.0]], [1 / 2, 1 / 2], [0.0, 1.0]),
    3: ([[], [1 / 2], [-1.0, 2.0]], [1 / 6, 4 / 6, 1 / 6], [0.0, 1 / 2, 1.0]),
    4: ([[], [1 / 2], [0.0, 1 / 2], [0.0, 0.0, 1.0]], [1 / 6, 2 / 6, 2 / 6, 1 / 6],
        [0.0, 1 / 2, 1 / 2, 1.0]),
}


def lms_coefficients(nodes: list[float], sigma_next: float) -> list[float]:
    """Adams-Bashforth weights ``c_j = int_{nodes[0]}^{sigma_next} l_j(s) ds``.

    ``l_j`` is the Lagrange basis polynomial of ``nodes`` (``nodes[0] = sigma_i`` the current
    level, ``nodes[j] = sigma_{i-j}`` the earlier ones). The integrand has degree
    ``len(nodes) - 1 <= 3``, so Gauss-Legendre with ``ceil(len(nodes) / 2)`` points on the
    rescaled interval ``s = sigma_i + h u``, ``u in [0, 1]``, is exact up to round-off
    (k-diffusion uses ``scipy.integrate.quad``, which agrees to ~1e-15 on these polynomials).

    Parameters
    ----------
    nodes : list of float, length ``q >= 1``
        Distinct sigmas, current first.
    sigma_next : float

    Returns
    -------
    list of float, length ``q``; they sum to ``sigma_next - nodes[0]``.
    """
    q = len(nodes)
    u, w = np.polynomial.legendre.leggauss(max(1, (q + 1) // 2))
    h = sigma_next - nodes[0]
    s = nodes[0] + h * (u + 1) / 2             # Gauss points mapped to [sigma_i, sigma_next]
    coeffs = []
    for j in range(q):
        basis = np.ones_like(s)
        for k in range(q):
            if k != j:
                basis *= (s - nodes[k]) / (nodes[j] - nodes[k])
        coeffs.append(float(h / 2 * np.dot(w, basis)))
    return coeffs


class LMS(Solver):
    """Linear multistep method of k-diffusion's ``sample_lms``.

    With ``d_k = (x_k - D(x_k, sigma_k)) / sigma_k`` and ``q_i = min(i + 1, order)``:

    ``x_{i+1} = x_i + sum_{j<q_i} c_{ij} d_{i-j}``,
    ``c_{ij} = int_{sigma_i}^{sigma_{i+1}} prod_{k<q_i, k!=j} (s - sigma_{i-k}) /
    (sigma_{i-j} - sigma_{i-k}) ds``,

    i.e. variable-step Adams-Bashforth of order ``q_i`` in sigma, warming up with Euler, AB2,
    ... for the first ``order - 1`` steps; the step to ``sigma = 0`` is not special-cased. One
    denoiser call per step.

    The declared convergence order is the measured global order, ``min(order, 2)``: the warm-up
    steps are taken at the grid's first (largest) step sizes, and the Euler first step's local
    error ``O(h^2)`` then dominates the global error (measured slopes 1.00, 1.97, 2.21, 2.05
    for ``order`` 1..4 on a Gaussian mixture at 64-512 steps; see ``docs/solvers.md``). The
    option ``order`` (kept as ``lms_order``) is the method's nominal order, ``self.order`` its
    verified convergence order.
    :class:`LMSCorrected` (``lms_corrected``) warms up with an order-``q`` Runge-Kutta step
    instead and reaches order ``q``.

    With ``lower_order_final`` the order is further capped by the steps left
    (``labkit.solvers.base.multistep_order``): the last step is Euler, the one before AB2, ...

    Parameters
    ----------
    order : int
        Nominal (maximal) Adams-Bashforth order, 1 to 4 (default 4, as in k-diffusion).
    lower_order_final : bool
        Lower the order on the last ``order - 1`` steps (default False: k-diffusion's method).

    References
    ----------
    Bashforth and Adams (1883); Hairer, Norsett, Wanner, "Solving Ordinary Differential
    Equations I", Sec. III.5 (variable step size Adams methods); Karras et al. (2022),
    arXiv:2206.00364; Crowson, k-diffusion (``sample_lms``).
    """

    name = "lms"
    order = 2.0
    nfe_per_step = 1

    def __init__(self, order: int = 4, lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(**options)
        if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
            raise TypeError(f"order must be an int from 1 to 4, got {type(order).__name__}")
        if not 1 <= order <= 4:
            raise ValueError(f"order must be an int from 1 to 4, got {order}")
        check_bool(lower_order_final, "lower_order_final")
        self.lms_order = int(order)
        self.lower_order_final = lower_order_final
        self.order = self._convergence_order()       # type: ignore[misc]
        self._ds = StepHistory(self.lms_order)       # d_i, d_{i-1}, ... newest first

    def _convergence_order(self) -> float:
        return float(min(self.lms_order, 2))         # measured, see above

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.lms_order}; convergence order {self.order:g})"

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        self._ds.start(i)
        sigma = sigmas[i]
        history = len(self._ds)                      # consecutive earlier derivatives kept
        self._ds.push(ode_derivative(x, sigma, denoiser(x, sigma)))
        if self._warm_up(history, sigmas[i + 1]):
            return self._runge_kutta_step(denoiser, x, sigma, sigmas[i + 1])
        q = multistep_order(self.lms_order, history, i, len(sigmas) - 1, self.lower_order_final)
        nodes = sigmas[i - q + 1:i + 2].tolist()[::-1]   # sigma_{i+1}, sigma_i, ..., sigma_{i-q+1}
        coeffs = lms_coefficients(nodes[1:], nodes[0])
        return x + sum(c * d for c, d in zip(coeffs, list(self._ds)[:q]))

    def _warm_up(self, history: int, sigma_next: Tensor) -> bool:
        """Whether this step is a one-step warm-up step (never in k-diffusion's LMS)."""
        return False

    def _runge_kutta_step(self, denoiser: CountingDenoiser, x: Tensor, sigma: Tensor,
                          sigma_next: Tensor) -> Tensor:
        """One explicit RK step of order ``lms_order`` in sigma; stage 1 is ``self._ds[0]``."""
        a, b, c = WARMUP_TABLEAUS[self.lms_order]
        h = sigma_next - sigma
        ks = [self._ds[0]]
        for j in range(1, len(b)):
            x_j = x + h * sum(a_jl * k for a_jl, k in zip(a[j], ks) if a_jl != 0)
            s_j = sigma + c[j] * h
            ks.append(ode_derivative(x_j, s_j, denoiser(x_j, s_j)))
        return x + h * sum(b_j * k for b_j, k in zip(b, ks))


class LMSCorrected(LMS):
    """LMS of order ``q`` whose warm-up is a one-step method of order ``q``: global order ``q``.

    As :class:`LMS` (variable-step Adams-Bashforth of order ``q`` in sigma,
    ``x_{i+1} = x_i + sum_{j<q} c_{ij} d_{i-j}``) except for the first ``q - 1`` steps of a run,
    which take an explicit Runge-Kutta step of order ``q`` in sigma instead of Euler, AB2, ...:
    Heun (``q = 2``), Kutta's third-order rule (``q = 3``), classical RK4 (``q = 4``)
    (``WARMUP_TABLEAUS``; ``q`` stages, the fewest that reach order ``q``). Their local errors
    are ``O(h^{q+1})`` like the Adams-Bashforth steps', so the global error is ``O(h^q)``
    (measured, ``docs/solvers.md``), where the faithful ``LMS``'s Euler first step caps it at 2.
    The first stage is the ``d_i`` that the multistep history keeps, so the warm-up costs
    ``(q - 1)^2`` extra denoiser calls per run (9 for ``q = 4``); one call per step afterwards.
    A warm-up step that ends at ``sigma = 0`` (a grid shorter than ``q`` steps) is the
    Adams-Bashforth step of the history available (Euler there returns ``D(x_i, sigma_i)``).

    Declared order ``q``. Not a published variant: labkit's correction of ``lms``.

    Parameters
    ----------
    order : int
        ``q``, 1 to 4 (default 4; ``q = 1`` is Euler, as ``LMS(order=1)``).
    lower_order_final : bool
        As :class:`LMS` (default False).
    """

    name = "lms_corrected"
    order = 4.0

    def _convergence_order(self) -> float:
        return float(self.lms_order)

    def _warm_up(self, history: int, sigma_next: Tensor) -> bool:
        return history < self.lms_order - 1 and float(sigma_next) > 0

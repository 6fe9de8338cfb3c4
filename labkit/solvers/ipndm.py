"""iPNDM: Adams-Bashforth on ``eps = dx/dsigma`` with a lower-order warm-up (fixed and variable step)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import CountingDenoiser, Solver, StepHistory, multistep_order, ode_derivative
from .._checks import check_bool
from .deis import _check_order

# Adams-Bashforth weights for a uniform step, newest first: (1), (3, -1)/2, (23, -16, 5)/12,
# (55, -59, 37, -9)/24.
AB_WEIGHTS = ((1.0,), (3 / 2, -1 / 2), (23 / 12, -16 / 12, 5 / 12),
              (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def ipndm_v_weights(h: list[float]) -> tuple[float, ...]:
    """ComfyUI's ``sample_ipndm_v`` weights (newest first) from the steps ``h = [h_n, h_{n-1}, ...]``.

    ``h_n = sigma_{n+1} - sigma_n``, ``h_{n-k} = sigma_{n-k+1} - sigma_{n-k}``; ``len(h)`` is the
    order (1 to 4). Orders 1 and 2 are exact variable-step Adams-Bashforth
    (``(1 + r/2, -r/2)``, ``r = h_n / h_{n-1}``). Orders 3 and 4 are transcribed as published:
    they reduce to the uniform weights when all steps are equal and sum to 1, but differ from
    variable-step Adams-Bashforth when the steps vary (e.g. order 3 uses
    ``(1 - A B) / 2`` where exact AB3 has ``(1 - A) B / 2``), by ``O(h_n - h_{n-1})``.
    """
    if len(h) == 1:
        return (1.0,)
    h0, h1 = h[0], h[1]
    c1, c2 = (2 + h0 / h1) / 2, -(h0 / h1) / 2
    if len(h) == 2:
        return (c1, c2)
    h2 = h[2]
    temp1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    if len(h) == 3:
        return (c1 + temp1, c2 - (1 + h1 / h2) * temp1, temp1 * h1 / h2)
    h3 = h[3]
    temp2 = (((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2)))
             * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3)))
    ratio = h1 * (h1 + h2) / (h2 * (h2 + h3))
    return (c1 + temp1 + temp2,
            c2 - (1 + h1 / h2) * temp1 - (1 + h1 / h2 + ratio) * temp2,
            temp1 * h1 / h2 + (h1 / h2 + ratio * (1 + h2 / h3)) * temp2,
            -temp2 * ratio * h1 / h2)


class IPNDM(Solver):
    """Improved PNDM: Adams-Bashforth with uniform-step weights on ``d = (x - D) / sigma``.

    With ``d_k = (x_k - D(x_k, sigma_k)) / sigma_k`` and ``q_i = min(order, i + 1)``:

    ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_{j<q_i} b^{(q_i)}_j d_{i-j}``,
    ``b^(1) = (1)``, ``b^(2) = (3, -1)/2``, ``b^(3) = (23, -16, 5)/12``,
    ``b^(4) = (55, -59, 37, -9)/24``,

    the fixed Adams-Bashforth weights whatever the grid, warming up with Euler, AB2, AB3. The
    step to ``sigma = 0`` returns ``D(x_i, sigma_i)``. One denoiser call per step.

    Declared order: measured, ``min(order, 2)``. The Euler first step's local ``O(h^2)`` error
    caps the global order at 2 (as for ``lms``); in addition, on a non-uniform grid the fixed
    AB3/AB4 weights integrate the interpolant of the wrong nodes, so their interior local error
    is ``O(h^3)`` (second order) unless the steps are equal (sympy expansion in
    ``tests/solvers/test_deis_ipndm.py``). Equal steps in ``sigma`` give the nominal interior
    order.

    Parameters
    ----------
    order : int
        Maximal Adams-Bashforth order, 1 to 4 (default 4, ComfyUI's ``max_order``).
    lower_order_final : bool
        Cap the order by the number of steps left, default ``False``.

    References
    ----------
    Zhang and Chen (2023), arXiv:2204.13902, Sec. 5 and App. (iPNDM); Zhou et al., "Fast
    ODE-based Sampling for Diffusion Models in Around 5 Steps", CVPR 2024, arXiv:2312.00094;
    ComfyUI ``sample_ipndm`` (after zju-pi/diff-sampler).
    """

    name = "ipndm"
    order = 2.0
    nfe_per_step = 1

    def __init__(self, order: int = 4, lower_order_final: bool = False, **options: Any) -> None:
        super().__init__(**options)
        self.ipndm_order = _check_order(order, 4)
        self.lower_order_final = check_bool(lower_order_final, "lower_order_final")
        self.order = float(min(self.ipndm_order, 2))  # type: ignore[misc]  # measured
        self._ds = StepHistory(self.ipndm_order)   # d_i, d_{i-1}, ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.ipndm_order}; convergence order {self.order:g})"

    def _weights(self, sigmas: Tensor, i: int, q: int) -> tuple[float, ...]:
        return AB_WEIGHTS[q - 1]

    def step(self, denoiser: CountingDenoiser, x: Tensor, i: int, sigmas: Tensor,
             generator: torch.Generator | None) -> Tensor:
        self._ds.start(i)
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, sigma)
        self._ds.push(ode_derivative(x, sigma, denoised))
        if float(sigma_next) == 0:
            return denoised
        q = multistep_order(self.ipndm_order, len(self._ds) - 1, i, len(sigmas) - 1,
                            self.lower_order_final)
        weights = self._weights(sigmas, i, q)
        return x + (sigma_next - sigma) * sum(w * d for w, d in zip(weights, self._ds))


class IPNDMV(IPNDM):
    """iPNDM with variable-step weights (ComfyUI's ``sample_ipndm_v``).

    As ``IPNDM`` but with the weights ``ipndm_v_weights(h)`` recomputed from the actual steps
    ``h_{i-k} = sigma_{i-k+1} - sigma_{i-k}``: exact variable-step AB2; AB3 and AB4 as
    published (equal to the variable-step Adams-Bashforth weights up to ``O(h_i - h_{i-1})``,
    see ``ipndm_v_weights``). The step to ``sigma = 0`` returns ``D(x_i, sigma_i)``. One
    denoiser call per step.

    Declared order: measured, ``min(order, 2)`` (the Euler warm-up caps it, as for ``lms``).

    Parameters
    ----------
    order : int
        Maximal order, 1 to 4 (default 4).
    lower_order_final : bool
        Cap the order by the number of steps left, default ``False``.

    References
    ----------
    Zhang and Chen (2023), arXiv:2204.13902; Zhou et al. (2024), arXiv:2312.00094; ComfyUI
    ``sample_ipndm_v`` (after zju-pi/diff-sampler ``diff-solvers-main/solvers.py``).
    """

    name = "ipndm_v"

    def _weights(self, sigmas: Tensor, i: int, q: int) -> tuple[float, ...]:
        s = sigmas[i - q + 1:i + 2].tolist()[::-1]           # sigma_{i+1}, sigma_i, ...
        return ipndm_v_weights([s[k] - s[k + 1] for k in range(q)])

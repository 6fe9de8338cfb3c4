"""LMS with an order-q one-step warm-up (``LMSCorrected``), and ``lower_order_final`` on the
multistep solvers ``lms``, ``dpmpp_2m``, ``dpmpp_3m``, ``dpmpp_3m_corrected``.

Orders are fitted as in ``test_ode_multistep.py`` (same targets, DOP853 mixture reference, Karras
grids without the final 0): on sigma 2 -> 0.05, on sigma 20 -> 0.05, and on a long grid from 20
where the faithful ``LMS(4)`` has fallen to order ~2 while ``LMSCorrected(4)`` stays at 4. A sympy
expansion shows why: the faithful warm-up's first step (Euler) has local error ``O(h^2)``, the
corrected warm-up's ``O(h^{q+1})``.
"""

import numpy as np
import pytest
import sympy as sp
import torch

from labkit import grids
from labkit.solvers import sample
from labkit.solvers._exponential import data_prediction_step, lambda_, phi
from labkit.solvers.base import ode_derivative
from labkit.solvers.dpmpp_2m import DPMpp2M
from labkit.solvers.dpmpp_3m import DPMpp3M, DPMpp3MCorrected
from labkit.solvers.lms import LMS, WARMUP_TABLEAUS, LMSCorrected
from labkit.solvers.reference import gaussian_flow_map
from labkit.testing import assert_order
from test_ode_multistep import _A, GAUSSIAN, MEAN, MIXTURE, _dop853

SIGMA_MIN = 0.05
# Fitted slope within 0.3 of the declared order, as test_ode_multistep.py (measured slopes:
# docstrings of the tests below and docs/solvers.md).
ORDER_TOL = 0.3


@pytest.fixture(scope="module")
def problems():
    out = {}
    for sigma_max in (2.0, 20.0):
        gen = torch.Generator().manual_seed(0)
        xg = sigma_max * torch.randn(32, 3, generator=gen, dtype=torch.float64)
        xm = sigma_max * torch.randn(16, 2, generator=gen, dtype=torch.float64)
        exact = gaussian_flow_map(MEAN, _A @ _A.T, xg, sigma_max, SIGMA_MIN)
        out["gaussian", sigma_max] = (GAUSSIAN, xg, exact)
        out["mixture", sigma_max] = (MIXTURE, xm, _mixture_reference(xm, sigma_max))
    return out


def _mixture_reference(xm, sigma_max):
    import test_ode_multistep as base      # its _dop853 integrates from its SIGMA_MAX
    saved = base.SIGMA_MAX
    base.SIGMA_MAX = sigma_max
    try:
        return _dop853(xm, 1e-13)
    finally:
        base.SIGMA_MAX = saved


def _errors(make_solver, problem, sigma_max, steps):
    denoiser, x0, exact = problem
    errors = []
    for n in steps:
        sigmas = grids.karras(n + 1, SIGMA_MIN, sigma_max)[:-1]      # no final zero
        out, _ = sample(denoiser, x0, sigmas, solver=make_solver())
        errors.append(float((out - exact).norm(dim=1).max()))
    return errors


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("q", [2, 3, 4])
def test_declared_order_sigma_max_2(q, problem, problems):
    """Measured slopes at 32..256 steps: Gaussian 1.95, 2.90, 3.80; mixture 1.93, 2.88, 3.86
    (q = 2, 3, 4), where the faithful LMS(3), LMS(4) give 2.13, 2.09 and 2.37, 2.12."""
    steps = [32, 64, 128, 256]
    errors = _errors(lambda: LMSCorrected(order=q), problems[problem, 2.0], 2.0, steps)
    assert min(errors) > 1e-12     # far above the DOP853 reference's 1e-12 gap
    assert_order(errors, [1 / n for n in steps], LMSCorrected(order=q).order, tol=ORDER_TOL)


@pytest.mark.parametrize("q", [3, 4])
def test_declared_order_sigma_max_20(q, problems):
    """From sigma 20 (mixture, 64..512 steps): measured 2.86 (q = 3) and 3.80 (q = 4)."""
    steps = [64, 128, 256, 512]
    errors = _errors(lambda: LMSCorrected(order=q), problems["mixture", 20.0], 20.0, steps)
    assert_order(errors, [1 / n for n in steps], float(q), tol=ORDER_TOL)


def test_long_grid_lms_drops_to_2_corrected_stays_4(problems):
    """Gaussian, sigma 20 -> 0.05, 256..1024 steps (8 points): LMS(4) measured 2.36,
    LMSCorrected(4) 3.97 (at 512..4096 steps: 2.08 and 3.99). The faithful one must fail the
    order-4 check (negative control of the same measurement)."""
    steps = [256, 512, 1024]
    denoiser, x0, exact = problems["gaussian", 20.0]
    problem = (denoiser, x0[:8], exact[:8])
    h = [1 / n for n in steps]
    assert_order(_errors(lambda: LMSCorrected(order=4), problem, 20.0, steps), h, 4.0,
                 tol=ORDER_TOL)
    faithful = _errors(lambda: LMS(order=4), problem, 20.0, steps)
    assert_order(faithful, h, 2.0, tol=0.5)                          # measured 2.36
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(faithful, h, 4.0, tol=ORDER_TOL)


def test_declarations_and_nfe():
    assert [LMSCorrected(order=q).order for q in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 4.0]
    assert LMSCorrected.order == 4.0 and LMSCorrected.nfe_per_step == 1
    sigmas = grids.karras(10, 0.05, 5.0)[:-1]           # 9 steps, no final 0
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for q in (1, 2, 3, 4):
        _, info = sample(MIXTURE, x, sigmas, solver=LMSCorrected(order=q))
        assert info.nfe == 9 + (q - 1) ** 2           # q - 1 warm-up steps of q stages
    # LMSCorrected(1) is LMS(1) (Euler), bit for bit.
    a, _ = sample(MIXTURE, x, sigmas, solver=LMSCorrected(order=1))
    b, _ = sample(MIXTURE, x, sigmas, solver=LMS(order=1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_warmup_is_runge_kutta_then_adams_bashforth_by_hand():
    """q = 2: the first step is Heun, the second AB2 with the variable-step weights
    c0 = h + h^2 / (2 h_prev), c1 = -h^2 / (2 h_prev); to sigma = 0 a grid ends with AB2 too."""
    sigmas = torch.tensor([3.0, 1.5, 0.7, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    out, info = sample(MIXTURE, x, sigmas, solver=LMSCorrected(order=2), record_trajectory=True)
    d = lambda y, s: ode_derivative(y, s, MIXTURE(y, torch.full((2,), s, dtype=y.dtype)))  # noqa
    k1 = d(x, 3.0)
    x1 = x + (-1.5) * 0.5 * (k1 + d(x + (-1.5) * k1, 1.5))
    torch.testing.assert_close(info.trajectory[1], x1, rtol=1e-14, atol=1e-14)
    for i, (x_i, h, h_prev) in enumerate([(x1, -0.8, -1.5)], start=1):
        x2 = x_i + (h + h ** 2 / (2 * h_prev)) * d(x_i, float(sigmas[i])) \
            - h ** 2 / (2 * h_prev) * k1
    torch.testing.assert_close(info.trajectory[2], x2, rtol=1e-14, atol=1e-14)
    assert info.nfe == 3 + 1


# --- sympy: local truncation error of the warm-up step --------------------------------------

def _leading_lte_power(b, a, c, max_power=6):
    """Lowest power of h in the local error of one explicit RK step (tableau a, b, c) on the
    1-D Gaussian PF-ODE dx/dsigma = sigma x / (1 + sigma^2) (variance 1, mean 0; linear in x,
    so x0 = 1), started at sigma = 2, against its exact solution sqrt((1 + sigma^2) / 5).
    Exact rational arithmetic on power series in h truncated after h^max_power."""
    h = sp.Symbol("h")

    def trunc(e):
        e = sp.expand(e)
        return sum((e.coeff(h, k) * h ** k for k in range(max_power + 1)), sp.Integer(0))

    def f(c_j, x):
        s = 2 + c_j * h
        return trunc(s * x * sp.series(1 / (1 + s ** 2), h, 0, max_power + 1).removeO())

    ks = []
    for j in range(len(b)):
        x_j = 1 + h * sum((sp.nsimplify(a[j][m]) * ks[m] for m in range(j)), sp.Integer(0))
        ks.append(f(sp.nsimplify(c[j]), trunc(x_j)))
    step = trunc(1 + h * sum(sp.nsimplify(b_j) * k for b_j, k in zip(b, ks)))
    exact = sp.series(sp.sqrt(1 + (4 * h + h ** 2) / 5), h, 0, max_power + 1).removeO()
    error = sp.expand(step - exact)
    return next((p for p in range(max_power + 1) if error.coeff(h, p) != 0), None)


def test_faithful_warmup_lte_starts_at_h2_corrected_at_h_q_plus_1():
    """k-diffusion's LMS first step is Euler (the order-1 tableau): LTE ~ h^2 whatever q;
    LMSCorrected(q)'s first step uses WARMUP_TABLEAUS[q]: LTE ~ h^(q+1)."""
    a, b, c = WARMUP_TABLEAUS[1]
    assert _leading_lte_power(b, a, c) == 2
    for q in (2, 3, 4):
        a, b, c = WARMUP_TABLEAUS[q]
        assert _leading_lte_power(b, a, c) == q + 1, q


def test_lte_check_flags_a_perturbed_tableau():
    """Negative control: RK4 with c_2 = a_21 = 0.4 instead of 1/2 (so sum b_j c_j = 7/15,
    not 1/2) is caught: its LTE starts at h^2."""
    a, b, c = WARMUP_TABLEAUS[4]
    a = [row[:] for row in a]
    a[1][0], c = 0.4, [0.0, 0.4, 0.5, 1.0]
    assert _leading_lte_power(b, a, c) == 2


# --- lower_order_final ----------------------------------------------------------------------

def _den(y, s):
    return MIXTURE(y, torch.full((y.shape[0],), float(s), dtype=y.dtype))


X = torch.tensor([[0.3, -1.0], [2.0, 0.5], [-1.0, 1.2]], dtype=torch.float64)
SHORT = torch.tensor([3.0, 1.5, 0.8, 0.4, 0.2], dtype=torch.float64)       # 4 steps, no 0


def _trajectory(solver, sigmas=SHORT):
    _, info = sample(MIXTURE, X, sigmas, solver=solver, record_trajectory=True)
    return info.trajectory, info.nfe


def test_lms_lower_order_final_by_hand():
    """LMS(4), 4 steps: orders 1, 2, 2, 1 with lower_order_final (1, 2, 3, 4 without): the last
    step is Euler, the third AB2 (weights as above); the first two equal the default's."""
    low, _ = _trajectory(LMS(order=4, lower_order_final=True))
    full, _ = _trajectory(LMS(order=4))
    for k in (0, 1, 2):
        torch.testing.assert_close(low[k], full[k], rtol=0, atol=0)
    s = SHORT.tolist()
    d = [ode_derivative(low[k], SHORT[k], _den(low[k], s[k])) for k in range(4)]
    h, h_prev = s[3] - s[2], s[2] - s[1]
    x3 = low[2] + (h + h ** 2 / (2 * h_prev)) * d[2] - h ** 2 / (2 * h_prev) * d[1]
    torch.testing.assert_close(low[3], x3, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(low[4], low[3] + (s[4] - s[3]) * d[3], rtol=1e-14, atol=1e-14)
    assert (low[4] - full[4]).abs().max() > 1e-6     # the default really differs there


def test_dpmpp_2m_lower_order_final_by_hand():
    low, _ = _trajectory(DPMpp2M(lower_order_final=True))
    full, _ = _trajectory(DPMpp2M())
    for k in range(4):
        torch.testing.assert_close(low[k], full[k], rtol=0, atol=0)
    ddim = data_prediction_step(low[3], SHORT[3], SHORT[4], _den(low[3], SHORT[3]))
    torch.testing.assert_close(low[4], ddim, rtol=1e-14, atol=1e-14)
    assert (low[4] - full[4]).abs().max() > 1e-6


@pytest.mark.parametrize("cls", [DPMpp3M, DPMpp3MCorrected])
def test_dpmpp_3m_lower_order_final_by_hand(cls):
    """4 steps: orders 1 (2S for the corrected), 2, 2, 1 with lower_order_final; the third
    step is the second-order update x_next + h phi_2(-h) (D_i - D_{i-1}) / r, the last DDIM."""
    low, nfe_low = _trajectory(cls(lower_order_final=True))
    full, nfe_full = _trajectory(cls())
    assert nfe_low == nfe_full
    for k in (0, 1, 2):
        torch.testing.assert_close(low[k], full[k], rtol=0, atol=0)
    t = lambda_(SHORT)
    h, h_prev = t[3] - t[2], t[2] - t[1]
    d2, d1 = _den(low[2], SHORT[2]), _den(low[1], SHORT[1])
    x3 = (torch.exp(-h) * low[2] + (-h).expm1().neg() * d2
          + h * phi(2, -h) * ((d2 - d1) / (h_prev / h)))
    torch.testing.assert_close(low[3], x3, rtol=1e-14, atol=1e-14)
    ddim = data_prediction_step(low[3], SHORT[3], SHORT[4], _den(low[3], SHORT[3]))
    torch.testing.assert_close(low[4], ddim, rtol=1e-14, atol=1e-14)
    assert (low[3] - full[3]).abs().max() > 1e-6


def test_dpmpp_3m_corrected_one_step_grid_lower_order_final_is_ddim():
    sigmas = torch.tensor([3.0, 1.0], dtype=torch.float64)
    out, nfe = _trajectory(DPMpp3MCorrected(lower_order_final=True), sigmas)
    # Same formula in another association order: a few ulp.
    torch.testing.assert_close(out[1], data_prediction_step(X, sigmas[0], sigmas[1],
                                                            _den(X, 3.0)), rtol=1e-14, atol=1e-14)
    assert nfe == 1 and _trajectory(DPMpp3MCorrected(), sigmas)[1] == 2


@pytest.mark.parametrize("make", [lambda v: LMS(lower_order_final=v),
                                  lambda v: LMSCorrected(lower_order_final=v),
                                  lambda v: DPMpp2M(lower_order_final=v),
                                  lambda v: DPMpp3M(lower_order_final=v),
                                  lambda v: DPMpp3MCorrected(lower_order_final=v)])
def test_lower_order_final_must_be_bool(make):
    with pytest.raises(TypeError, match="lower_order_final"):
        make(1)
    assert make(False).lower_order_final is False


@pytest.mark.parametrize("order, err", [(0, ValueError), (5, ValueError), (2.0, TypeError)])
def test_lms_corrected_bad_order(order, err):
    with pytest.raises(err, match="order"):
        LMSCorrected(order=order)


def test_lms_corrected_history_resets_between_runs():
    sigmas = grids.karras(8, 0.05, 5.0)
    solver = LMSCorrected()
    sample(MIXTURE, X, sigmas, solver=solver)
    again, _ = sample(MIXTURE, -X, sigmas, solver=solver)
    fresh, _ = sample(MIXTURE, -X, sigmas, solver=LMSCorrected())
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    assert np.isfinite(again.numpy()).all()

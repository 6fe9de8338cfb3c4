"""DEIS (tAB, rhoAB, corrected warm-up), iPNDM and iPNDM-v: orders, identities, coefficients.

Orders are fitted as in test_ode_multistep.py: Karras grids (rho = 7) from sigma_max = 2 to
sigma_min = 0.05 WITHOUT the final 0, 64..512 steps, on the exact Gaussian flow map and on a
3-component 2-D mixture against DOP853 (``reference_flow``, a-posteriori bound 9e-13).
"""

import math
import warnings

import numpy as np
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

import labkit
from labkit import grids
from labkit.solvers import sample
from labkit.solvers import deis as deis_module
from labkit.solvers.ddim import DDIM
from labkit.solvers.deis import DEIS, DEISCorrected, deis_coefficients
from labkit.solvers.euler import Euler
from labkit.solvers.ipndm import AB_WEIGHTS, IPNDM, IPNDMV, ipndm_v_weights
from labkit.solvers.lms import LMS
from labkit.solvers.reference import gaussian_flow_map, reference_flow
from labkit.testing import assert_order

SIGMA_MAX, SIGMA_MIN = 2.0, 0.05
STEPS = [64, 128, 256, 512]
# Measured slopes are within 0.1 of the declared order (docs/solvers.md, DEIS and iPNDM section); 0.3 leaves
# room for the O(h^3) interior terms that still add to the O(h^2) warm-up error at 64 steps, and
# still separates neighbouring integer orders.
ORDER_TOL = 0.3

MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
_A = torch.tensor([[1.0, 0.3], [0.2, -0.7], [0.5, 0.4]], dtype=torch.float64)
GAUSSIAN = labkit.Gaussian(MEAN, _A @ _A.T)
MIXTURE = labkit.GaussianMixture(torch.tensor([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.2]]),
                                 torch.tensor([0.3, 0.15, 0.5]), weights=[0.3, 0.5, 0.2])

SOLVERS = {"deis2": lambda: DEIS(order=2), "deis3": DEIS,
           "deis_corrected3": DEISCorrected, "deis_corrected4": lambda: DEISCorrected(order=4),
           "ipndm4": IPNDM, "ipndm_v4": IPNDMV}


@pytest.fixture(scope="module")
def problems():
    gen = torch.Generator().manual_seed(0)
    xg = SIGMA_MAX * torch.randn(32, 3, generator=gen, dtype=torch.float64)
    xm = SIGMA_MAX * torch.randn(16, 2, generator=gen, dtype=torch.float64)
    ref = reference_flow(MIXTURE, xm, SIGMA_MAX, SIGMA_MIN)
    return {"gaussian": (GAUSSIAN, xg, gaussian_flow_map(MEAN, _A @ _A.T, xg, SIGMA_MAX,
                                                          SIGMA_MIN)),
            "mixture": (MIXTURE, xm, ref.x), "bound": ref.error_bound}


def _errors(make_solver, problem, steps=STEPS):
    denoiser, x0, exact = problem
    errors = []
    for n in steps:
        sigmas = grids.karras(n + 1, SIGMA_MIN, SIGMA_MAX)[:-1]      # no final zero
        out, _ = sample(denoiser, x0, sigmas, solver=make_solver())
        errors.append(float((out - exact).norm(dim=1).max()))
    return errors


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_declared_order(name, problem, problems):
    errors = _errors(SOLVERS[name], problems[problem])
    if problem == "mixture":    # DOP853 is > 1000x more accurate (smallest error 4.7e-9 vs 9e-13)
        assert problems["bound"] < 1e-3 * min(errors)
    assert_order(errors, [1 / n for n in STEPS], SOLVERS[name]().order, tol=ORDER_TOL)


def test_declared_orders():
    """The declared order is the measured one: min(order, 2), corrected: order."""
    assert [DEIS(order=q).order for q in (1, 2, 3, 4)] == [1.0, 2.0, 2.0, 2.0]
    assert [DEIS(order=q, variable="rho").order for q in (1, 3)] == [1.0, 2.0]
    assert [IPNDM(order=q).order for q in (1, 2, 3, 4)] == [1.0, 2.0, 2.0, 2.0]
    assert [IPNDMV(order=q).order for q in (1, 4)] == [1.0, 2.0]
    assert [DEISCorrected(order=q).order for q in (1, 2, 3, 4)] == [1.0, 2.0, 3.0, 4.0]


def test_deis3_does_not_reach_its_nominal_order(problems):
    """The reason DEIS(3) declares 2: its Euler first step caps the global order."""
    errors = _errors(DEIS, problems["mixture"])
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 3.0, tol=ORDER_TOL)


def test_wrong_coefficient_is_caught(problems, monkeypatch):
    """Negative control: moving 1% of the step from c_0 to the oldest weight (the weights still
    sum to the step, so the method stays consistent) makes deis_corrected(3) first order."""
    exact = deis_module.deis_coefficients

    def perturbed(nodes, sigma_next, variable=None):
        c = exact(nodes, sigma_next, variable)
        if len(c) == 3:
            delta = 0.01 * (sigma_next - nodes[0])
            c = c + np.array([-delta, 0.0, delta])
        return c

    monkeypatch.setattr(deis_module, "deis_coefficients", perturbed)
    errors = _errors(DEISCorrected, problems["mixture"])
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 3.0, tol=ORDER_TOL)


# --- identities ---------------------------------------------------------------------------------
X = 10.0 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
KARRAS = grids.karras(12, 0.01, 10.0)                     # ends in 0
NO_ZERO = KARRAS[:-1]


def _run(solver, sigmas=KARRAS, x=X):
    return sample(MIXTURE, x, sigmas, solver=solver)[0]


@pytest.mark.parametrize("sigmas", [KARRAS, NO_ZERO])
def test_deis_order1_is_ddim_and_euler(sigmas):
    """Order 1: c_0 = sigma_{i+1} - sigma_i, i.e. Euler = DDIM. Round-off: ~12 steps of values of
    size ~10 at relative 1e-16."""
    for variable in ("t", "rho"):
        out = _run(DEIS(order=1, variable=variable), sigmas)
        torch.testing.assert_close(out, _run(DDIM(), sigmas), rtol=0, atol=1e-13)
        torch.testing.assert_close(out, _run(Euler(), sigmas), rtol=0, atol=1e-13)


@pytest.mark.parametrize("q", [1, 2, 3, 4])
def test_deis_rho_is_lms(q, sigmas=NO_ZERO):
    """rhoAB interpolates eps in sigma itself: k-diffusion's LMS. Our weights come from a
    log-sigma quadrature, LMS's from Gauss-Legendre in sigma; both are exact to ~1e-16
    relative, so the outputs agree to round-off (measured <= 4e-15 on values of size ~10).
    Grid without 0: on the step to 0 DEIS returns D (ComfyUI), LMS extrapolates its polynomial."""
    torch.testing.assert_close(_run(DEIS(order=q, variable="rho"), sigmas),
                               _run(LMS(order=q), sigmas), rtol=0, atol=1e-13)


def test_ipndm_order1_is_euler_and_v2_is_lms2():
    torch.testing.assert_close(_run(IPNDM(order=1)), _run(Euler()), rtol=0, atol=0)
    torch.testing.assert_close(_run(IPNDMV(order=1)), _run(Euler()), rtol=0, atol=0)
    # ipndm_v's AB2 weights (1 + r/2, -r/2) are exact variable-step AB2.
    torch.testing.assert_close(_run(IPNDMV(order=2), NO_ZERO), _run(LMS(order=2), NO_ZERO),
                               rtol=0, atol=1e-13)


@pytest.mark.parametrize("q", [2, 3])
def test_ipndm_fixed_and_variable_agree_on_uniform_steps(q):
    """With equal steps in sigma the variable-step weights are the fixed ones (and LMS's)."""
    sigmas = torch.linspace(5.0, 0.5, 13, dtype=torch.float64)
    fixed = _run(IPNDM(order=q), sigmas)
    torch.testing.assert_close(_run(IPNDMV(order=q), sigmas), fixed, rtol=0, atol=1e-13)
    torch.testing.assert_close(_run(LMS(order=q), sigmas), fixed, rtol=0, atol=1e-13)


def test_ipndm_v_order4_weights_are_not_ab4():
    """As published, ipndm_v's 4th-order weights on EQUAL steps are (57, -65, 43, -11)/24 =
    AB4 + (1, -3, 3, -1)/12: an extra h/12 times the third difference of d, so the interior
    step is third order (local error h^4, see docs)."""
    w = np.array(ipndm_v_weights([-0.1] * 4)) * 24
    np.testing.assert_allclose(w, [57, -65, 43, -11], rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.array(ipndm_v_weights([-0.1] * 3)) * 12, [23, -16, 5],
                               rtol=0, atol=1e-12)


def test_fixed_weights_sum_to_one():
    for w in AB_WEIGHTS:
        assert math.isclose(sum(w), 1.0, abs_tol=1e-15)


# --- the DEIS weights ---------------------------------------------------------------------------
def _t_vp(sigma, beta_min=0.1, beta_max=20.0):
    """VP time from sigma, EDM's form (an independent formula)."""
    beta_d = beta_max - beta_min
    return (np.sqrt(beta_min ** 2 + 2 * beta_d * np.log1p(sigma ** 2)) - beta_min) / beta_d


_sigma_lists = st.lists(st.floats(2e-3, 80.0), min_size=2, max_size=5, unique=True).map(
    lambda v: sorted(v)).filter(lambda v: min(np.diff(np.log(v))) > 1e-2)


@given(_sigma_lists)
def test_deis_coefficients_match_adaptive_quadrature(levels):
    """tAB weights equal QUADPACK's (epsrel 1e-12) on the integrand in sigma with an independent
    t(sigma), to 1e-11 of the largest weight (measured <= 2e-14; the basis values reach
    ~1e3 when steps vary by 1e2, so round-off is ~1e3 * 1e-16 of the weight scale). They sum
    to the step and reproduce int t(s)^k ds for k < q."""
    sigma_next, nodes = levels[0], levels[1:][::-1]
    tn = _t_vp(np.array(nodes))
    q = len(nodes)

    def basis(j):
        return lambda s: np.prod([(_t_vp(s) - tn[k]) / (tn[j] - tn[k])
                                  for k in range(q) if k != j])

    # QUADPACK may warn that round-off stops it short of epsrel 1e-12 on near-cancelling basis
    # polynomials; the comparison below still bounds the difference, so the warning is muted.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        ref = np.array([integrate.quad(basis(j), nodes[0], sigma_next, epsabs=0, epsrel=1e-12,
                                       limit=200)[0] for j in range(q)])
    c = deis_coefficients(nodes, sigma_next, lambda s: DEIS()._time(s))
    scale = np.abs(ref).max()
    np.testing.assert_allclose(c, ref, rtol=0, atol=1e-11 * scale)
    assert abs(c.sum() - (sigma_next - nodes[0])) <= 1e-11 * scale


# --- symbolic local truncation error of fixed-weight iPNDM --------------------------------------
# Scalar target N(0, 1), x = 1 at sigma = 1/3; history on the exact flow at sigma e^h, sigma e^2h
# (a geometric grid: steps in sigma shrink by e^-h, so they are NOT equal), step to sigma e^-h.
# Rational sigma keeps the expansion exact and fast; the interior AB3 step of variable-step
# Adams-Bashforth would start at h^4.
_h = sp.symbols("h", positive=True)
_SIG = sp.Rational(1, 3)


def _flow(y, s, tau):
    return y * sp.sqrt((1 + s ** 2 * sp.exp(-2 * tau)) / (1 + s ** 2))


@pytest.mark.parametrize("q, first_power", [(1, 2), (2, 3), (3, 3)])
def test_ipndm_symbolic_local_error(q, first_power):
    """Euler warm-up: h^2 (global order <= 2); AB2: h^3; fixed AB3 on the geometric grid: h^3,
    not h^4 (its weights integrate the interpolant of equally spaced nodes)."""
    x = sp.Integer(1)
    levels = [_SIG * sp.exp(-_h)] + [_SIG * sp.exp(j * _h) for j in range(q)]
    eps = [(1 - 1 / (1 + levels[j + 1] ** 2)) * _flow(x, _SIG, -j * _h) / levels[j + 1]
           for j in range(q)]
    step = x + (levels[0] - levels[1]) * sum(sp.nsimplify(w) * e
                                             for w, e in zip(AB_WEIGHTS[q - 1], eps))
    err = sp.series(step - _flow(x, _SIG, _h), _h, 0, first_power + 1).removeO()
    coeffs = [sp.nsimplify(err.coeff(_h, j)) for j in range(first_power + 1)]
    assert coeffs[:first_power] == [0] * first_power
    assert coeffs[first_power] != 0


# --- dtypes, NFE, history, options --------------------------------------------------------------
CASES = {"deis": DEIS, "deis4": lambda: DEIS(order=4), "deis_rho": lambda: DEIS(variable="rho"),
         "deis_corrected4": lambda: DEISCorrected(order=4), "ipndm": IPNDM, "ipndm_v": IPNDMV}


@pytest.mark.parametrize("name", sorted(CASES))
def test_float32_agrees_with_float64(name):
    sigmas = grids.karras(24, 0.01, 20.0)
    x = 20.0 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out64, _ = sample(MIXTURE, x, sigmas, solver=CASES[name]())
    out32, _ = sample(MIXTURE, x.float(), sigmas, solver=CASES[name]())
    assert out32.dtype == torch.float32
    # As for lms: <= 30 evaluations with relative round-off ~1e-7 on values of size ~20; the
    # weights are float64 numbers (per step, not per sample) and the flow contracts.
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=2e-4)


@pytest.mark.parametrize("make, nfe", [(DEIS, 10), (IPNDM, 10), (IPNDMV, 10),
                                       (DEISCorrected, 12),
                                       (lambda: DEISCorrected(order=4), 16)])
def test_nfe_and_history_reset(make, nfe):
    sigmas = grids.karras(10, 0.05, 5.0)
    solver = make()
    first, info = sample(MIXTURE, X, sigmas, solver=solver)
    assert info.nfe == nfe
    again, _ = sample(MIXTURE, -X, sigmas, solver=solver)
    fresh, _ = sample(MIXTURE, -X, sigmas, solver=make())
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


def test_step_to_zero_returns_the_denoiser():
    sigmas = torch.tensor([3.0, 1.0, 0.0], dtype=torch.float64)
    for solver in (DEIS(), IPNDM(), IPNDMV(), DEISCorrected()):
        out, info = sample(MIXTURE, X, sigmas, solver=solver)
        x1 = sample(MIXTURE, X, sigmas[:2], solver=type(solver)())[0]
        torch.testing.assert_close(out, MIXTURE(x1, torch.full((8,), 1.0, dtype=torch.float64)),
                                   rtol=0, atol=0)


def test_lower_order_final_and_process_option():
    sigmas = grids.karras(6, 0.05, 5.0)[:-1]
    plain, lof = _run(DEIS(order=3), sigmas), _run(DEIS(order=3, lower_order_final=True), sigmas)
    assert not torch.equal(plain, lof)
    # EDM's t is sigma: tAB in EDM time is rhoAB.
    torch.testing.assert_close(_run(DEIS(process="edm"), sigmas),
                               _run(DEIS(variable="rho"), sigmas), rtol=0, atol=1e-13)


@pytest.mark.parametrize("cls", [DEIS, DEISCorrected, IPNDM, IPNDMV])
@pytest.mark.parametrize("kwargs, err, match", [
    ({"order": 0}, ValueError, "order"), ({"order": 5}, ValueError, "order"),
    ({"order": 2.0}, TypeError, "order"), ({"order": True}, TypeError, "order"),
    ({"lower_order_final": 1}, TypeError, "lower_order_final"),
    ({"churn": 1.0}, TypeError, "unknown options")])
def test_bad_options(cls, kwargs, err, match):
    with pytest.raises(err, match=match):
        cls(**kwargs)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"variable": "sigma"}, ValueError, "variable"), ({"variable": 1}, TypeError, "variable"),
    ({"process": "nope"}, ValueError, "process"), ({"process": 3}, TypeError, "process")])
def test_bad_deis_options(kwargs, err, match):
    with pytest.raises(err, match=match):
        DEIS(**kwargs)

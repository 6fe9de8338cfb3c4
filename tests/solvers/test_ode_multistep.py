"""DPM-2, LMS and DPM-Solver++(2M): verified orders, NFE accounting, coefficients, dtypes.

Orders are fitted on the exact Gaussian flow and on a Gaussian mixture (a single Gaussian can
super-converge), against DOP853 at rtol = atol = 1e-12 on the PF-ODE in log-sigma. The grids are
Karras (rho = 7) from sigma_max = 2 to sigma_min = 0.05 WITHOUT the final 0, so the pure ODE order
is measured. sigma_max = 2 puts the first steps where the flow is curved: from sigma_max = 20
the flow is nearly ``x ~ sigma`` there, on which Euler is exact, so LMS's low-order warm-up
hides until ~1000 steps (LMS(4) shows a pre-asymptotic slope of ~3.5; see docs/solvers.md).
"""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate

import labkit
from labkit import grids
from labkit.solvers import sample
from labkit.solvers._exponential import data_prediction_step
from labkit.solvers.dpm2 import DPM2
from labkit.solvers.dpm_solver import DPMSolver
from labkit.solvers.dpmpp_2m import DPMpp2M
from labkit.solvers.lms import LMS, lms_coefficients
from labkit.solvers.reference import gaussian_flow_map
from labkit.testing import assert_order

SIGMA_MAX, SIGMA_MIN = 2.0, 0.05
STEPS = [64, 128, 256, 512]
# The fitted slope must equal the declared order within 0.3; the measured slopes are within
# 0.01 of it for DPM-2 and DPM++(2M), within 0.22 for LMS, whose O(h^3) interior error still
# adds to its O(h^2) warm-up error at 64 steps (docs/solvers.md). 64..512 steps: the
# asymptotic regime of LMS(3) (at 16..128 steps its slope on the mixture is still 2.4).
ORDER_TOL = 0.3

MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
_A = torch.tensor([[1.0, 0.3], [0.2, -0.7], [0.5, 0.4]], dtype=torch.float64)
GAUSSIAN = labkit.Gaussian(MEAN, _A @ _A.T)                    # low rank: null space included
MIXTURE = labkit.GaussianMixture(torch.tensor([[-1.5, 0.0], [1.0, 1.0], [0.5, -1.2]]),
                                 torch.tensor([0.3, 0.15, 0.5]), weights=[0.3, 0.5, 0.2])

SOLVERS = {"dpm_2": DPM2, "dpmpp_2m": DPMpp2M,
           **{f"lms{q}": (lambda q=q: LMS(order=q)) for q in (1, 2, 3, 4)}}


def _dop853(x0, rtol):
    """Mixture PF-ODE in log-sigma, dx/dlog(sigma) = x - D(x, sigma), by DOP853."""
    n, d = x0.shape

    def rhs(log_sigma, y):
        x = torch.from_numpy(y.reshape(n, d))
        return (x - MIXTURE(x, torch.full((n,), np.exp(log_sigma), dtype=x.dtype))).numpy().ravel()

    sol = integrate.solve_ivp(rhs, (np.log(SIGMA_MAX), np.log(SIGMA_MIN)), x0.numpy().ravel(),
                              method="DOP853", rtol=rtol, atol=rtol)
    assert sol.success
    return torch.from_numpy(sol.y[:, -1].reshape(n, d))


@pytest.fixture(scope="module")
def problems():
    gen = torch.Generator().manual_seed(0)
    xg = SIGMA_MAX * torch.randn(32, 3, generator=gen, dtype=torch.float64)
    xm = SIGMA_MAX * torch.randn(16, 2, generator=gen, dtype=torch.float64)
    ref12, ref13 = _dop853(xm, 1e-12), _dop853(xm, 1e-13)
    return {"gaussian": (GAUSSIAN, xg, gaussian_flow_map(MEAN, _A @ _A.T, xg, SIGMA_MAX,
                                                          SIGMA_MIN)),
            "mixture": (MIXTURE, xm, ref13),
            "mixture_ref_gap": float((ref12 - ref13).abs().max())}


def _errors(make_solver, problem):
    denoiser, x0, exact = problem
    errors = []
    for n in STEPS:
        sigmas = grids.karras(n + 1, SIGMA_MIN, SIGMA_MAX)[:-1]      # no final zero
        out, _ = sample(denoiser, x0, sigmas, solver=make_solver())
        errors.append(float((out - exact).norm(dim=1).max()))
    return errors


def test_mixture_reference_error_bound(problems):
    """DOP853 at rtol 1e-12 and 1e-13 agree to < 1e-10 (measured 9e-13), over four orders of
    magnitude below the smallest solver error measured below (3e-6), so the reference does not
    bias the slopes (each order test also asserts that margin)."""
    assert problems["mixture_ref_gap"] < 1e-10


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_declared_order(name, problem, problems):
    make = SOLVERS[name]
    errors = _errors(make, problems[problem])
    assert min(errors) > 1e4 * problems["mixture_ref_gap"]
    assert_order(errors, [1 / n for n in STEPS], make().order, tol=ORDER_TOL)


def test_lms_declared_orders():
    """The declared order is the measured one, min(order, 2); the class default is LMS(4)'s."""
    assert [LMS(order=q).order for q in (1, 2, 3, 4)] == [1.0, 2.0, 2.0, 2.0]
    assert LMS.order == LMS().order == 2.0
    assert (DPM2.order, DPMpp2M.order) == (2.0, 2.0)


def test_lms4_does_not_reach_its_nominal_order(problems):
    """The reason LMS(4) declares 2: its Euler/AB2/AB3 warm-up caps the global order."""
    errors = _errors(LMS, problems["mixture"])
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 4.0, tol=ORDER_TOL)


class _DPMpp2MWithoutCorrection(DPMpp2M):
    """Planted defect: the 2nd-order correction removed (DPM-Solver++(1) at every step)."""

    def step(self, denoiser, x, i, sigmas, generator):
        return data_prediction_step(x, sigmas[i], sigmas[i + 1], denoiser(x, sigmas[i]))


@pytest.mark.parametrize("make, claimed", [(lambda: LMS(order=1), 2.0),
                                           (_DPMpp2MWithoutCorrection, 2.0)])
def test_order_check_flags_planted_defects(make, claimed, problems):
    """Negative controls: first-order methods do not pass the order-2 check on the mixture."""
    errors = _errors(make, problems["mixture"])
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], claimed, tol=ORDER_TOL)


@pytest.mark.parametrize("name, with_zero, nfe", [
    ("dpm_2", True, 2 * 10 - 1), ("dpm_2", False, 2 * 10),   # the step to 0 is one Euler call
    ("dpmpp_2m", True, 10), ("dpmpp_2m", False, 10),
    *[(f"lms{q}", z, 10) for q in (1, 2, 3, 4) for z in (True, False)]])
def test_nfe_accounting(name, with_zero, nfe):
    sigmas = grids.karras(10 if with_zero else 11, 0.01, 10.0)
    sigmas = sigmas if with_zero else sigmas[:-1]
    assert len(sigmas) == 11
    x = 10.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, info = sample(MIXTURE, x, sigmas, solver=SOLVERS[name]())
    assert info.nfe == nfe
    assert SOLVERS[name]().nfe_per_step == (2 if name == "dpm_2" else 1)


def test_dpmpp_2m_first_and_last_steps_are_first_order_by_hand():
    """x1 = DDIM step; x2 with D' = (1 + 1/2r) D1 - D0/2r; the step to 0 returns D(x2)."""
    sigmas = torch.tensor([3.0, 1.0, 0.4, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    out, info = sample(MIXTURE, x, sigmas, solver=DPMpp2M())
    den = lambda y, s: MIXTURE(y, torch.full((2,), s, dtype=torch.float64))  # noqa: E731
    d0 = den(x, 3.0)
    x1 = (1 / 3) * x - (np.exp(-np.log(3.0)) - 1) * d0           # h0 = log 3 - log 1
    d1 = den(x1, 1.0)
    h0, h1 = np.log(3.0), np.log(1.0 / 0.4)
    r = h0 / h1
    x2 = 0.4 * x1 - (np.exp(-h1) - 1) * ((1 + 1 / (2 * r)) * d1 - d0 / (2 * r))
    # Exact float64 formulas evaluated in another order: a few ulp on values of size ~2.
    torch.testing.assert_close(out, den(x2, 0.4), rtol=1e-14, atol=1e-14)
    assert info.nfe == 3


def test_dpm2_matches_its_update_rule_by_hand():
    sigmas = torch.tensor([4.0, 1.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    out, _ = sample(MIXTURE, x, sigmas, solver=DPM2())
    den = lambda y, s: MIXTURE(y, torch.full((1,), s, dtype=torch.float64))  # noqa: E731
    x_mid = x + (2.0 - 4.0) * (x - den(x, 4.0)) / 4.0               # sigma_mid = sqrt(4 * 1)
    expected = x + (1.0 - 4.0) * (x_mid - den(x_mid, 2.0)) / 2.0
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)


def _quad_coefficients(nodes, sigma_next):
    """k-diffusion's route: QUADPACK on each Lagrange basis polynomial."""
    def basis(j):
        return lambda s: np.prod([(s - nodes[k]) / (nodes[j] - nodes[k])
                                  for k in range(len(nodes)) if k != j])
    # QUADPACK may warn that round-off stops it short of epsrel; the caller's comparison still
    # bounds the difference, so the warning is muted (as in test_deis_ipndm.py).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return [integrate.quad(basis(j), nodes[0], sigma_next, epsabs=0, epsrel=1e-13)[0]
                for j in range(len(nodes))]


_sigma_lists = st.lists(st.floats(1e-3, 1e2), min_size=2, max_size=5, unique=True).map(
    lambda v: sorted(v)).filter(lambda v: min(np.diff(np.log(v))) > 1e-2)


@given(_sigma_lists)
def test_lms_coefficients_agree_with_quadrature_and_are_exact(levels):
    """Weights equal QUADPACK's to 1e-12 relative (both exact on polynomials of degree <= 3, so
    the gap is round-off of a few terms of size <= max weight), sum to the step, and integrate
    every polynomial of degree < q exactly."""
    sigma_next, nodes = levels[0], levels[1:][::-1]             # current (largest) first
    h = sigma_next - nodes[0]
    c = np.array(lms_coefficients(nodes, sigma_next))
    quad = np.array(_quad_coefficients(nodes, sigma_next))
    scale = np.abs(quad).max()
    np.testing.assert_allclose(c, quad, rtol=0, atol=1e-12 * scale)
    assert abs(c.sum() - h) <= 1e-12 * scale
    q = len(nodes)
    for degree in range(q):
        exact = (sigma_next ** (degree + 1) - nodes[0] ** (degree + 1)) / (degree + 1)
        got = float(np.dot(c, np.array(nodes) ** degree))
        # Cancellation: terms of size scale * max(node)^degree.
        assert abs(got - exact) <= 1e-12 * scale * max(nodes) ** degree


# Every deterministic configuration: the registry's defaults plus the order options.
FLOAT32_CASES = {**{n: c for n, c in labkit.SOLVERS.items() if not c.stochastic}, **SOLVERS,
                 **{f"dpm_solver{k}": (lambda k=k: DPMSolver(order=k)) for k in (1, 2)}}


@pytest.mark.parametrize("name", sorted(FLOAT32_CASES))
def test_float32_agrees_with_float64(name):
    sigmas = grids.karras(24, 0.01, 20.0)
    x = 20.0 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out64, _ = sample(MIXTURE, x, sigmas, solver=FLOAT32_CASES[name]())
    out32, _ = sample(MIXTURE, x.float(), sigmas, solver=FLOAT32_CASES[name]())
    assert out32.dtype == torch.float32
    # <= 70 evaluations, each with relative round-off ~1e-7 on values of size ~20 (the flow
    # contracts towards the data, so errors do not grow).
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=2e-4)


@pytest.mark.parametrize("name", ["dpmpp_2m", "lms4", "lms2"])
def test_multistep_history_resets_between_runs(name):
    """Reusing an instance gives the same numbers as a fresh one: history restarts at i = 0."""
    sigmas = grids.karras(8, 0.05, 5.0)
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    solver = SOLVERS[name]()
    first, _ = sample(MIXTURE, x, sigmas, solver=solver)
    again, _ = sample(MIXTURE, -x, sigmas, solver=solver)
    fresh, _ = sample(MIXTURE, -x, sigmas, solver=SOLVERS[name]())
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("order, err", [(0, ValueError), (5, ValueError), (-1, ValueError),
                                        (2.0, TypeError), (True, TypeError), ("4", TypeError)])
def test_lms_bad_order(order, err):
    with pytest.raises(err, match="order"):
        LMS(order=order)


@pytest.mark.parametrize("cls", [DPM2, DPMpp2M, LMS])
def test_unknown_options_rejected(cls):
    with pytest.raises(TypeError, match="unknown options"):
        cls(churn=1.0)

"""DDIM, singlestep DPM-Solver 1-3, DPM-Solver++(2S) and (3M): orders, NFE, identities.

Orders are measured as in ``test_ode_multistep.py`` (whose problems and helpers are reused):
Karras grids from sigma 2 to 0.05 WITHOUT the final 0, 64..512 steps, exact Gaussian flow and a
Gaussian mixture against DOP853 (rtol 1e-13). A sympy check expands one step on the scalar
Gaussian flow in the log-SNR step ``h`` and locates the first non-zero local error term.
"""

import math

import mpmath
import pytest
import sympy as sp
import torch
from hypothesis import given
from hypothesis import strategies as st

import labkit
from labkit import grids
from labkit.solvers import Euler, sample
from labkit.solvers import dpm_solver as dpm_solver_module
from labkit.solvers._exponential import phi
from labkit.solvers.ddim import DDIM
from labkit.solvers.dpm_solver import DPMSolver
from labkit.solvers.dpmpp_3m import DPMpp3M, DPMpp3MCorrected
from labkit.solvers.dpmpp_singlestep import DPMpp2S
from labkit.testing import assert_order

# Sibling modules (pytest puts tests/solvers on sys.path): the order-test problems and the
# k-diffusion loader with its closed-form denoiser.
import make_kdiffusion_reference as ref  # noqa: E402
import test_ode_multistep as base  # noqa: E402

problems = base.problems                  # module-scoped fixture, re-used here
MIXTURE, STEPS, ORDER_TOL = base.MIXTURE, base.STEPS, base.ORDER_TOL

SOLVERS = {"ddim": DDIM, "dpmpp_2s": DPMpp2S, "dpmpp_3m": DPMpp3M,
           "dpmpp_3m_corrected": DPMpp3MCorrected,
           **{f"dpm_solver{k}": (lambda k=k: DPMSolver(order=k)) for k in (1, 2, 3)}}


def _errors(make, problem, problems):
    errors = base._errors(make, problems[problem])
    # Mixture: the smallest error (DPM-Solver-3, 5e-9) is >= 1e3 times the DOP853 reference's
    # error (~1e-12: its gap to rtol 1e-12 is 9e-13), which moves each log-error by < 1e-3 and
    # the fitted slope by less than that. (The Gaussian reference is exact.)
    if problem == "mixture":
        assert min(errors) > 1e3 * problems["mixture_ref_gap"]
    return errors


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_declared_order(name, problem, problems):
    """Measured within 0.05 of the declared order (docs/solvers.md); tol 0.3."""
    make = SOLVERS[name]
    assert_order(_errors(make, problem, problems), [1 / n for n in STEPS], make().order,
                 tol=ORDER_TOL)


def test_declared_orders_and_nfe_per_step():
    assert [DPMSolver(order=k).order for k in (1, 2, 3)] == [1.0, 2.0, 3.0]
    assert [DPMSolver(order=k).nfe_per_step for k in (1, 2, 3)] == [1, 2, 3]
    assert (DDIM.order, DPMpp2S.order, DPMpp3M.order, DPMpp3MCorrected.order) == (1, 2, 2, 3)
    assert (DDIM.nfe_per_step, DPMpp2S.nfe_per_step, DPMpp3M.nfe_per_step) == (1, 2, 1)
    assert not any(cls.stochastic for cls in (DDIM, DPMSolver, DPMpp2S, DPMpp3M))


def test_published_dpmpp_3m_is_second_order(problems):
    """Why ``dpmpp_3m`` declares 2: the faithful algorithm fails the order-3 check."""
    errors = _errors(DPMpp3M, "mixture", problems)
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 3.0, tol=ORDER_TOL)


def test_order_check_flags_perturbed_dpm_solver3(problems, monkeypatch):
    """Negative control: DPM-Solver-3 with its phi_2 coefficients scaled by 1.1 (an O(h^3)
    local error) is second order and fails the order-3 check."""
    monkeypatch.setattr(dpm_solver_module, "phi", lambda k, z: 1.1 * phi(k, z))
    errors = _errors(lambda: DPMSolver(order=3), "mixture", problems)
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 3.0, tol=ORDER_TOL)


@pytest.mark.parametrize("name, with_zero, nfe", [
    ("ddim", True, 10), ("ddim", False, 10),
    *[(f"dpm_solver{k}", True, 9 * k + 1) for k in (1, 2, 3)],   # the step to 0: one call
    *[(f"dpm_solver{k}", False, 10 * k) for k in (1, 2, 3)],
    ("dpmpp_2s", True, 19), ("dpmpp_2s", False, 20),
    ("dpmpp_3m", True, 10), ("dpmpp_3m", False, 10),
    ("dpmpp_3m_corrected", True, 11), ("dpmpp_3m_corrected", False, 11)])   # 2S first step
def test_nfe_accounting(name, with_zero, nfe):
    sigmas = grids.karras(10 if with_zero else 11, 0.01, 10.0)
    sigmas = sigmas if with_zero else sigmas[:-1]
    assert len(sigmas) == 11
    x = 10.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    _, info = sample(MIXTURE, x, sigmas, solver=SOLVERS[name]())
    assert info.nfe == nfe



_grids = st.lists(st.floats(1e-2, 50.0), min_size=2, max_size=8, unique=True).map(
    lambda v: sorted(v, reverse=True)).filter(lambda v: min(a / b for a, b in zip(v, v[1:])) > 1.01)


@given(_grids, st.booleans(), st.integers(0, 2 ** 31 - 1))
def test_ddim_equals_euler_and_dpm_solver1(levels, with_zero, seed):
    """DDIM, Euler in sigma and DPM-Solver-1 are the same map: equal to round-off on random
    grids (with or without the final 0) and random mixtures. Each step is the same affine map
    evaluated in another order (a few ulp of |x| <= ~100) and the steps contract, so 1e-12
    relative to the output's scale is a wide margin."""
    gen = torch.Generator().manual_seed(seed)
    k = 3
    target = labkit.GaussianMixture(2 * torch.randn(k, 2, generator=gen, dtype=torch.float64),
                                    0.05 + torch.rand(k, generator=gen, dtype=torch.float64),
                                    weights=(0.1 + torch.rand(k, generator=gen)).tolist())
    sigmas = torch.tensor(levels + ([0.0] if with_zero else []), dtype=torch.float64)
    x = levels[0] * torch.randn(8, 2, generator=gen, dtype=torch.float64)
    out, info = sample(target, x, sigmas, solver=DDIM())
    scale = 1 + float(x.abs().max())
    for other in (Euler(), DPMSolver(order=1)):
        out_other, info_other = sample(target, x, sigmas, solver=other)
        torch.testing.assert_close(out, out_other, rtol=0, atol=1e-12 * scale)
        assert info.nfe == info_other.nfe == len(levels) - (0 if with_zero else 1)


def test_ddim_equality_check_detects_a_perturbed_grid():
    """Negative control for the tolerance above: a 1e-9 relative grid change is detected."""
    sigmas = grids.karras(8, 0.05, 5.0)
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    a, _ = sample(MIXTURE, x, sigmas, solver=DDIM())
    b, _ = sample(MIXTURE, x, sigmas * (1 + 1e-9), solver=Euler())
    with pytest.raises(AssertionError):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * 6)


def test_dpmpp_2s_and_dpm_solver2_match_their_update_rules_by_hand():
    sigmas = torch.tensor([4.0, 1.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0]], dtype=torch.float64)
    den = lambda y, s: MIXTURE(y, torch.full((1,), s, dtype=torch.float64))  # noqa: E731
    h, sigma_s = math.log(4.0), 2.0                   # s = lambda + h/2: sigma_s = sqrt(4 * 1)
    u = (sigma_s / 4.0) * x - (math.exp(-h / 2) - 1) * den(x, 4.0)
    out, _ = sample(MIXTURE, x, sigmas, solver=DPMpp2S())
    # Same float64 formulas in another order: a few ulp on values of size ~1.
    torch.testing.assert_close(out, (1 / 4) * x - (math.exp(-h) - 1) * den(u, sigma_s),
                               rtol=1e-14, atol=1e-14)
    eps0 = (x - den(x, 4.0)) / 4.0
    u = x - sigma_s * (math.exp(h / 2) - 1) * eps0
    eps1 = (u - den(u, sigma_s)) / sigma_s
    expected = x - 1.0 * (math.exp(h) - 1) * eps0 - 1.0 * (math.exp(h) - 1) * (eps1 - eps0)
    out, _ = sample(MIXTURE, x, sigmas, solver=DPMSolver(order=2))
    torch.testing.assert_close(out, expected, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["dpmpp_3m", "dpmpp_3m_corrected"])
def test_multistep_history_resets_between_runs(name):
    sigmas = grids.karras(8, 0.05, 5.0)
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    solver = SOLVERS[name]()
    sample(MIXTURE, x, sigmas, solver=solver)
    again, _ = sample(MIXTURE, -x, sigmas, solver=solver)
    fresh, _ = sample(MIXTURE, -x, sigmas, solver=SOLVERS[name]())
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


@pytest.mark.parametrize("order, err", [(0, ValueError), (4, ValueError), (2.0, TypeError),
                                        (True, TypeError), ("3", TypeError)])
def test_dpm_solver_bad_order(order, err):
    with pytest.raises(err, match="order"):
        DPMSolver(order=order)


@pytest.mark.parametrize("cls", [DDIM, DPMSolver, DPMpp2S, DPMpp3M, DPMpp3MCorrected])
def test_unknown_options_rejected(cls):
    with pytest.raises(TypeError, match="unknown options"):
        cls(eta=0.5)


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("z", [0.0, 1e-9, -1e-4, 0.03, -0.5, 0.999, 1.0, -1.0, -7.0, 4.0])
def test_phi_is_accurate_for_small_and_large_arguments(k, z):
    """phi_k against 40-digit mpmath: within 4 ulp in float64 (series for |z| < 1, closed form
    beyond: measured <= 2 ulp) and 8 ulp in float32."""
    mpmath.mp.dps = 40
    zz = mpmath.mpf(z)
    exact = (mpmath.mpf(1) / math.factorial(k) if z == 0 else
             (mpmath.expm1(zz) - sum(zz ** j / mpmath.factorial(j) for j in range(1, k)))
             / zz ** k)
    for dtype, ulps in ((torch.float64, 4), (torch.float32, 8)):
        got = float(phi(k, torch.tensor(z, dtype=dtype)))
        assert abs(got - float(exact)) <= ulps * torch.finfo(dtype).eps * abs(float(exact))


@pytest.mark.parametrize("k, err", [(0, ValueError), (7, ValueError), (1.0, TypeError)])
def test_phi_bad_index(k, err):
    with pytest.raises(err, match="k must"):
        phi(k, torch.tensor(0.5))


# --- Symbolic local truncation error on the scalar Gaussian flow -------------------------------
# Target N(0, s^2) in 1-D: D(x, sigma) = s^2 x / (s^2 + sigma^2); over a log-SNR step h the exact
# PF-ODE map is x -> x sqrt((s^2 + sigma^2 e^{-2h}) / (s^2 + sigma^2)). Multistep history is
# taken on the exact solution at lambda - h, lambda - 2h (r = 1). Without loss of generality
# s = 1 (x / s and sigma / s solve the same flow with s = 1) and x = 1 (every step is linear in
# x); sigma stays symbolic.
_h, _sig = sp.symbols("h sigma", positive=True)
_s, _x = sp.Integer(1), sp.Integer(1)


def _den(y, sg):
    return _s ** 2 * y / (_s ** 2 + sg ** 2)


def _eps(y, sg):
    return (y - _den(y, sg)) / sg


def _flow(y, sg, tau):
    return y * sp.sqrt((_s ** 2 + sg ** 2 * sp.exp(-2 * tau)) / (_s ** 2 + sg ** 2))


def _symbolic_steps():
    h, sig, x = _h, _sig, _x
    sn, d0 = sig * sp.exp(-h), _den(x, sig)
    ddim = d0 + sp.exp(-h) * (x - d0)
    ss = sig * sp.exp(-h / 2)                                   # r1 = 1/2
    u = x - ss * (sp.exp(h / 2) - 1) * _eps(x, sig)
    dpm2 = (x - sn * (sp.exp(h) - 1) * _eps(x, sig)
            - sn * (sp.exp(h) - 1) * (_eps(u, ss) - _eps(x, sig)))
    d_1 = _den(_flow(x, sig, -h), sig * sp.exp(h))
    d_2 = _den(_flow(x, sig, -2 * h), sig * sp.exp(2 * h))
    dpmpp_2m = sp.exp(-h) * x - (sp.exp(-h) - 1) * (sp.Rational(3, 2) * d0 - d_1 / 2)
    d1_0, d1_1 = d0 - d_1, d_1 - d_2                             # r0 = r1 = 1
    p2 = (sp.exp(-h) - 1) / h + 1                                # k-diffusion's phi_2, phi_3
    p3 = p2 / h - sp.Rational(1, 2)
    three_m = {scale: sp.exp(-h) * x - (sp.exp(-h) - 1) * d0 + p2 * (d1_0 + (d1_0 - d1_1) / 2)
               - p3 * scale * (d1_0 - d1_1) / 2 for scale in (1, 2)}
    return {"ddim": (ddim, 1), "dpm_solver2": (dpm2, 2), "dpmpp_2m": (dpmpp_2m, 2),
            "dpmpp_3m": (three_m[1], 2), "dpmpp_3m_corrected": (three_m[2], 3)}


@pytest.mark.parametrize("name", ["ddim", "dpm_solver2", "dpmpp_2m", "dpmpp_3m",
                                  "dpmpp_3m_corrected"])
def test_symbolic_local_error_starts_at_h_to_order_plus_one(name):
    """The coefficients of h^0..h^order of (one step - exact map) vanish identically and that
    of h^(order+1) does not. For the interior step of the published 3M that is h^3 (its d2 is
    half of h^2 D''), so it is second order; doubling d2 gives h^4."""
    step, order = _symbolic_steps()[name]
    exact = _flow(_x, _sig, _h)
    err = sp.series(step - exact, _h, 0, order + 2).removeO()
    coeffs = [sp.simplify(err.coeff(_h, j)) for j in range(order + 2)]
    assert coeffs[:order + 1] == [0] * (order + 1)
    assert coeffs[order + 1] != 0
    # A concrete value, so that "!= 0" is not an unsimplified zero.
    assert coeffs[order + 1].subs(_sig, sp.Rational(1, 3)) != 0


def test_matches_kdiffusion_live():
    """dpmpp_2s = sample_dpmpp_2s_ancestral(eta=0) and dpmpp_3m = sample_dpmpp_3m_sde(eta=0),
    singlestep DPM-Solver = DPMSolver.dpm_solver_{k}_step, on k-diffusion 0.1.1.post1 (measured
    bit-identical for 2S, <= 4.4e-16 otherwise; 1e-12 as in test_kdiffusion_conformance).
    Runs when KDIFFUSION_SAMPLING points at k-diffusion's sampling.py."""
    kd = ref.live_sampling()
    data = ref.inputs(kd)
    model = ref.mixture_denoiser
    for sigmas in data["grids"].values():
        x = data["x"]
        cases = [(kd.sample_dpmpp_2s_ancestral(model, x, sigmas, eta=0.0, disable=True),
                  DPMpp2S()),
                 (kd.sample_dpmpp_3m_sde(model, x, sigmas, eta=0.0, disable=True,
                                         noise_sampler=lambda a, b: None), DPMpp3M())]
        for k in (1, 2, 3):
            solver, y = kd.DPMSolver(model), x.clone()
            for i in range(len(sigmas) - 1):
                if float(sigmas[i + 1]) == 0:
                    y = model(y, sigmas[i] * y.new_ones(y.shape[0]))
                else:
                    y, _ = getattr(solver, f"dpm_solver_{k}_step")(
                        y, solver.t(sigmas[i]), solver.t(sigmas[i + 1]))
            cases.append((y, DPMSolver(order=k)))
        for expected, ours in cases:
            out, _ = sample(model, x, sigmas, solver=ours)
            torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)

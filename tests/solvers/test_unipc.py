"""UniPC (bh1/bh2, orders 1-3, with and without UniC): orders, identities, options, LTE.

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
from labkit.solvers import sample
from labkit.solvers import unipc as unipc_module
from labkit.solvers._exponential import phi
from labkit.solvers.ddim import DDIM
from labkit.solvers.unipc import UniPC, unipc_weights
from labkit.testing import assert_order

import test_ode_multistep as base  # noqa: E402  (sibling module: order-test problems)

problems = base.problems                  # module-scoped fixture, re-used here
MIXTURE, STEPS, ORDER_TOL = base.MIXTURE, base.STEPS, base.ORDER_TOL
# UniPC-3 bh1 is pre-asymptotic at 64..512: slope 2.50 on the Gaussian (local slopes 2.29,
# 2.45, 2.78, rising to 3) and 3.35 on the mixture (3.51, 3.34, 3.20, falling to 3): its
# warm-up error ~h^3 is small because a Karras grid's first steps are short in lambda_, and
# the interior ~h^4 error competes with it. It is measured on finer grids: the Gaussian on
# 256..2048 steps (2.88; local 2.78, 2.90, 2.95), the mixture on 128..1024 (3.22).
LONG_STEPS = {"gaussian": [256, 512, 1024, 2048], "mixture": [128, 256, 512, 1024]}
CONFIGS = [(v, p, c) for v in ("bh1", "bh2") for p in (1, 2, 3) for c in (False, True)]
_cache = {}


def _errors(variant, order, corrector, problem, problems, steps=None):
    steps = steps or STEPS
    key = (variant, order, corrector, problem, tuple(steps))
    if key not in _cache:
        saved = list(base.STEPS)
        base.STEPS[:] = steps
        try:
            _cache[key] = base._errors(
                lambda: UniPC(order=order, variant=variant, corrector=corrector),
                problems[problem])
        finally:
            base.STEPS[:] = saved
    errors = _cache[key]
    # Mixture: the smallest error (UniPC-3 at 512 steps, 6e-9) is >= 1e3 times the DOP853
    # reference's error (~1e-12), which moves each log-error by < 1e-3; at 1024 steps (7e-10,
    # bh1 UniPC-3 only) the margin is 1e2 (< 1e-2 on a log-error, < 0.01 on the slope).
    # (The Gaussian reference is exact.)
    if problem == "mixture":
        assert min(errors) > (1e3 if max(steps) <= 512 else 1e2) * problems["mixture_ref_gap"]
    return errors


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("variant, order, corrector", CONFIGS)
def test_declared_order(variant, order, corrector, problem, problems):
    """Measured within 0.1 of the declared order (docs/solvers.md) except the one
    pre-asymptotic case above, measured on longer grids; tol 0.3."""
    steps = LONG_STEPS[problem] if (variant, order, corrector) == ("bh1", 3, True) else STEPS
    solver = UniPC(order=order, variant=variant, corrector=corrector)
    assert_order(_errors(variant, order, corrector, problem, problems, steps),
                 [1 / n for n in steps], solver.order, tol=ORDER_TOL)


def test_declared_orders():
    """UniP-p: p capped at 2 by the first-order first step; UniPC-p: p + 1 capped at 3."""
    for v in ("bh1", "bh2"):
        assert [UniPC(order=p, variant=v, corrector=False).order for p in (1, 2, 3)] == [1, 2, 2]
        assert [UniPC(order=p, variant=v).order for p in (1, 2, 3)] == [2, 3, 3]
    assert UniPC.order == UniPC().order == 3.0
    assert UniPC.nfe_per_step == 1 and not UniPC.stochastic


@pytest.mark.parametrize("order", [2, 3])
def test_published_unipc_p_does_not_reach_p_plus_one(order, problems):
    """Why UniP-3 declares 2 and UniPC-3 declares 3 rather than the paper's 3 and 4: the
    warm-up's single first-order step (local error h^2, h^3 with UniC) caps the global order."""
    corrector = order == 3
    errors = _errors("bh2", 3, corrector, "mixture", problems)
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], order + 1.0, tol=ORDER_TOL)


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("variant", ["bh1", "bh2"])
def test_corrector_improves_error_at_fixed_nfe(variant, order, problems):
    """Same grid, same NFE: UniPC beats UniP on the mixture at every step count (measured
    ratios 3..90)."""
    with_c = _errors(variant, order, True, "mixture", problems)
    without = _errors(variant, order, False, "mixture", problems)
    assert all(a < b / 2 for a, b in zip(with_c, without))


def test_bh1_and_bh2_differ():
    """B(h) = -h and B(h) = expm1(-h) give different iterates (they differ by ~h^2 B / 2 per
    step: > 1e-5 on 16 steps, against round-off ~1e-15), while order 1 without corrector never
    uses B and is the same map."""
    sigmas = grids.karras(17, 0.05, 2.0)[:-1]
    x = 2.0 * torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    for order, corrector in ((1, False), (2, False), (3, False), (1, True), (2, True), (3, True)):
        a, _ = sample(MIXTURE, x, sigmas, solver=UniPC(order=order, variant="bh1",
                                                       corrector=corrector))
        b, _ = sample(MIXTURE, x, sigmas, solver=UniPC(order=order, variant="bh2",
                                                       corrector=corrector))
        if (order, corrector) == (1, False):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        else:
            assert float((a - b).abs().max()) > 1e-5


class _PerturbedCorrector(UniPC):
    """Planted defect: the weight of the new point in UniC scaled by 1.1."""

    def _update(self, x, t, t_next, history, new):
        if new is None:
            return super()._update(x, t, t_next, history, new)
        exact = super()._update(x, t, t_next, history, new)
        h = t_next - t
        rks = [(t_m - t) / h for t_m, _ in history[1:]] + [1.0]
        B, rhos = unipc_weights(rks, h, self.variant)
        rho_last = 0.5 if len(history) == 1 else rhos[-1]
        return exact - B * 0.1 * rho_last * (new - history[0][1])


def test_order_check_flags_perturbed_corrector_weight(problems):
    """Negative control: a 10% error in UniC's weight of D at the new point (local error
    O(h^2)) makes UniPC-2 first order; the order-3 check on the mixture catches it."""
    errors = base._errors(lambda: _PerturbedCorrector(order=2), problems["mixture"])
    with pytest.raises(AssertionError, match="observed order"):
        assert_order(errors, [1 / n for n in STEPS], 3.0, tol=ORDER_TOL)


_grids = st.lists(st.floats(1e-2, 50.0), min_size=2, max_size=8, unique=True).map(
    lambda v: sorted(v, reverse=True)).filter(lambda v: min(a / b for a, b in zip(v, v[1:])) > 1.01)


@given(_grids, st.booleans(), st.sampled_from(["bh1", "bh2"]), st.integers(0, 2 ** 31 - 1))
def test_unip1_equals_ddim(levels, with_zero, variant, seed):
    """UniP-1 (order 1, no corrector) is DDIM: equal to round-off on random grids and mixtures
    (the same affine map in another order: a few ulp of |x| <= ~100; 1e-12 as in the
    DDIM/Euler identity test)."""
    gen = torch.Generator().manual_seed(seed)
    k = 3
    target = labkit.GaussianMixture(2 * torch.randn(k, 2, generator=gen, dtype=torch.float64),
                                    0.05 + torch.rand(k, generator=gen, dtype=torch.float64),
                                    weights=(0.1 + torch.rand(k, generator=gen)).tolist())
    sigmas = torch.tensor(levels + ([0.0] if with_zero else []), dtype=torch.float64)
    x = levels[0] * torch.randn(8, 2, generator=gen, dtype=torch.float64)
    out, info = sample(target, x, sigmas, solver=DDIM())
    ours, info_ours = sample(target, x, sigmas,
                             solver=UniPC(order=1, variant=variant, corrector=False))
    torch.testing.assert_close(ours, out, rtol=0, atol=1e-12 * (1 + float(x.abs().max())))
    assert info.nfe == info_ours.nfe


def test_unipc2_matches_its_update_rule_by_hand():
    """Grid 3 -> 1 -> 0.4 -> 0, UniPC-2 bh2: x1 = DDIM; UniC-1 (rho = 1/2) corrects it with
    D(x1); UniP-2 (rho = 1/2) from the corrected x1; the step to 0 returns D(x2). Written from
    the paper's formulas (Zhao et al. 2023, Alg. 2-3 with B(h) = expm1(-h))."""
    sigmas = torch.tensor([3.0, 1.0, 0.4, 0.0], dtype=torch.float64)
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    out, info = sample(MIXTURE, x, sigmas, solver=UniPC(order=2))
    den = lambda y, s: MIXTURE(y, torch.full((2,), s, dtype=torch.float64))  # noqa: E731
    h0, h1 = math.log(3.0), math.log(1 / 0.4)
    d0 = den(x, 3.0)
    x1 = math.exp(-h0) * x + (1 - math.exp(-h0)) * d0
    d1 = den(x1, 1.0)
    x1c = math.exp(-h0) * x + (1 - math.exp(-h0)) * d0 - math.expm1(-h0) * 0.5 * (d1 - d0)
    r = -h0 / h1
    x2 = (math.exp(-h1) * x1c + (1 - math.exp(-h1)) * d1
          - math.expm1(-h1) * 0.5 * (d0 - d1) / r)
    # Same float64 formulas in another order: a few ulp on values of size ~2.
    torch.testing.assert_close(out, den(x2, 0.4), rtol=1e-14, atol=1e-14)
    assert info.nfe == 3


@pytest.mark.parametrize("with_zero", [True, False])
@pytest.mark.parametrize("order", [1, 2, 3])
def test_nfe_is_one_per_step(order, with_zero):
    sigmas = grids.karras(10 if with_zero else 11, 0.01, 10.0)
    sigmas = sigmas if with_zero else sigmas[:-1]
    x = 10.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for lof in (False, True):
        _, info = sample(MIXTURE, x, sigmas, solver=UniPC(order=order, lower_order_final=lof))
        assert info.nfe == 10


def test_history_resets_between_runs():
    sigmas = grids.karras(8, 0.05, 5.0)
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    solver = UniPC(order=3)
    sample(MIXTURE, x, sigmas, solver=solver)
    again, _ = sample(MIXTURE, -x, sigmas, solver=solver)
    fresh, _ = sample(MIXTURE, -x, sigmas, solver=UniPC(order=3))
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)


def test_lower_order_final_changes_only_the_last_steps():
    """With lower_order_final the last step of UniPC-3 is UniP-1: a different result, finite."""
    sigmas = grids.karras(6, 0.05, 5.0)[:-1]
    x = 5.0 * torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    a, _ = sample(MIXTURE, x, sigmas, solver=UniPC(order=3))
    b, _ = sample(MIXTURE, x, sigmas, solver=UniPC(order=3, lower_order_final=True))
    assert torch.isfinite(b).all() and (a - b).abs().max() > 1e-6


@pytest.mark.parametrize("order", [2, 3])
def test_float32_agrees_with_float64(order):
    """float32 in, float32 out; within 1e-4 of the float64 run on 32 steps to 0.002 of the
    mixture (measured 1.1e-6 for UniPC-2, 7.8e-7 for UniPC-3: ~32 steps x a few ulp
    (1.2e-7) of |x| <= ~10 at the start, not amplified by the contracting flow; 1e-4 leaves a
    ~100x margin, while a float32 run losing all precision in the weights would be off by
    far more)."""
    sigmas = grids.karras(33, 0.002, 10.0)[:-1]
    x = 10.0 * torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    ref, _ = sample(MIXTURE, x, sigmas, solver=UniPC(order=order))
    out, _ = sample(MIXTURE, x.float(), sigmas.float(), solver=UniPC(order=order))
    assert out.dtype == torch.float32
    assert float((out.double() - ref).abs().max()) < 1e-4


@pytest.mark.parametrize("options, err, match", [
    ({"order": 4}, ValueError, "order"), ({"order": 0}, ValueError, "order"),
    ({"order": 2.0}, TypeError, "order"), ({"order": True}, TypeError, "order"),
    ({"variant": "bh3"}, ValueError, "variant"), ({"variant": 2}, TypeError, "variant"),
    ({"corrector": 1}, TypeError, "corrector"), ({"corrector": "yes"}, TypeError, "corrector"),
    ({"lower_order_final": None}, TypeError, "lower_order_final"),
    ({"eta": 0.5}, TypeError, "unknown options")])
def test_bad_options(options, err, match):
    with pytest.raises(err, match=match):
        UniPC(**options)


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("z", [0.0, -1e-9, -1e-4, -0.03, -0.5, -0.999, -1.0, -7.0, -40.0])
def test_float_phi_matches_tensor_phi(k, z):
    """The float phi used for the weights against 80-digit mpmath: 4 ulp for |z| < 1 (series),
    4 k! ulp beyond (the closed form loses up to a factor k!, as _exponential.phi does)."""
    with mpmath.workdps(80):
        zz = mpmath.mpf(z)
        exact = float(mpmath.mpf(1) / math.factorial(k) if z == 0 else
                      (mpmath.expm1(zz) - sum(zz ** j / mpmath.factorial(j) for j in range(1, k)))
                      / zz ** k)
    ulps = 4 if abs(z) < 1 else 4 * math.factorial(k)
    assert abs(unipc_module._phi(k, z) - exact) <= ulps * torch.finfo(torch.float64).eps * exact


@given(st.floats(1e-4, 3.0), st.lists(st.floats(0.2, 3.0), min_size=0, max_size=2),
       st.sampled_from(["bh1", "bh2"]))
def test_weights_satisfy_the_order_conditions(h, gaps, variant):
    """sum_m rho_m r_m^(k-1) = k! (-h) phi_{k+1}(-h) / B(h) to 1e-9 relative (Vandermonde
    solves with nodes >= 0.2 apart and |r| <= 7: condition number < 1e4)."""
    rks = [-sum(gaps[:m + 1]) for m in range(len(gaps))] + [1.0]
    B, rho = unipc_weights(rks, h, variant)
    assert B == (-h if variant == "bh1" else math.expm1(-h))
    for k in range(1, len(rks) + 1):
        b = math.factorial(k) * (-h) * float(phi(k + 1, torch.tensor(-h, dtype=torch.float64))) / B
        got = sum(r ** (k - 1) * w for r, w in zip(rks, rho))
        assert abs(got - b) <= 1e-9 * (1 + abs(b))


# --- Symbolic local truncation error on the scalar Gaussian flow -------------------------------
# Target N(0, 1) in 1-D, x = 1 (see test_exponential_integrators.py): D(x, sigma) = x / (1 +
# sigma^2), exact map x sqrt((1 + sigma^2 e^{-2h}) / (1 + sigma^2)). History on the exact
# solution at lambda_ - h, lambda_ - 2h (r = -1, -2); sigma = 1/3 (a symbolic sigma gives the
# same orders but takes a minute). Written from the paper's formulas, independently of
# labkit.solvers.unipc.
_h = sp.symbols("h", positive=True)
_sig = sp.Rational(1, 3)


def _den(y, sg):
    return y / (1 + sg ** 2)


def _flow(y, sg, tau):
    return y * sp.sqrt((1 + sg ** 2 * sp.exp(-2 * tau)) / (1 + sg ** 2))


def _symbolic_step(p, variant, corrector):
    h, sig, x = _h, _sig, sp.Integer(1)
    hh = -h
    B = hh if variant == "bh1" else sp.exp(hh) - 1
    hphi = lambda k: (sp.exp(hh) - sum(hh ** j / sp.factorial(j) for j in range(k))) / hh ** (k - 1)  # noqa: E731,E501
    b = [sp.factorial(k) * hphi(k + 1) / B for k in range(1, p + 1)]
    ds = [_den(_flow(x, sig, -m * h), sig * sp.exp(m * h)) for m in range(p)]
    x_ = sp.exp(-h) * x - (sp.exp(-h) - 1) * ds[0]
    rks = [-m for m in range(1, p)]
    d1s = [(ds[m] - ds[0]) / rks[m - 1] for m in range(1, p)]
    if p == 1:
        xp = x_
    elif p == 2:
        xp = x_ - B * d1s[0] / 2
    else:
        rho = sp.Matrix([[r ** k for r in rks] for k in range(p - 1)]).LUsolve(sp.Matrix(b[:-1]))
        xp = x_ - B * sum(rho[m] * d1s[m] for m in range(p - 1))
    if not corrector:
        return xp
    d1s.append(_den(xp, sig * sp.exp(-h)) - ds[0])
    rks.append(1)
    rho = ([sp.Rational(1, 2)] if p == 1 else
           sp.Matrix([[r ** k for r in rks] for k in range(p)]).LUsolve(sp.Matrix(b)))
    return x_ - B * sum(rho[m] * d1s[m] for m in range(p))


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("p, corrector", [(1, False), (2, False), (1, True)])
def test_symbolic_local_error_starts_at_h_to_local_order(p, corrector, variant):
    """UniP-p: local error starts at h^(p+1); UniC-1 after UniP-1: at h^3. The first step of a
    run is p = 1 (h^2 without UniC, h^3 with it), which caps the global orders of UniP-3 at 2
    and UniPC-3 at 3. (UniP-3, UniPC-2 and UniPC-3 are checked below: their series takes
    10-35 s.)"""
    local = p + 1 + corrector
    err = sp.series(_symbolic_step(p, variant, corrector) - _flow(1, _sig, _h), _h, 0,
                    local + 1).removeO()
    coeffs = [sp.nsimplify(sp.simplify(err.coeff(_h, j))) for j in range(local + 1)]
    assert coeffs[:local] == [0] * local
    assert coeffs[local] != 0


@pytest.mark.parametrize("variant", ["bh1", "bh2"])
@pytest.mark.parametrize("p", [2, 3])
def test_unipc_local_error_is_h_to_p_plus_two(p, variant):
    """UniPC-p (interior step): local error ~ C h^(p+2), the paper's order p + 1. The same
    sympy step evaluated with 60 digits at h = 1e-3 / 2^j: successive ratios are 2^(p+2)
    within 1% (the next term changes the ratio by O(h) ~ 1e-3), and UniP-p alone gives
    2^(p+1) (so the check tells the two apart). A full series expansion confirms it (h^4,
    h^5; measured, 10-35 s, too slow for the suite)."""
    with mpmath.workdps(60):
        for corrector, local in ((True, p + 2), (False, p + 1)):
            f = sp.lambdify(_h, _symbolic_step(p, variant, corrector) - _flow(1, _sig, _h), "mpmath")
            errs = [f(mpmath.mpf(1) / 1000 / 2 ** j) for j in range(3)]
            for a, b in zip(errs, errs[1:]):
                assert abs(a / b / 2 ** local - 1) < 1e-2


def test_symbolic_step_matches_the_solver():
    """The sympy UniPC-3 bh2 step (history on the exact solution) equals labkit's to 1e-12 at
    h = 0.3, sigma = 1/3, so the expansion above is about the implemented update."""
    h = 0.3
    lam0 = -math.log(1 / 3)
    solver = UniPC(order=3, variant="bh2")
    exact = lambda m: float(_flow(1, _sig, -m * h))                        # noqa: E731
    hist = [(lam0 - m * h, torch.tensor([[float(_den(exact(m), _sig * math.exp(m * h)))]],
                                        dtype=torch.float64)) for m in range(3)]
    x = torch.ones(1, 1, dtype=torch.float64)
    xp = solver._update(x, lam0, lam0 + h, hist, None)
    dn = xp / (1 + (math.exp(-h) / 3) ** 2)
    xc = solver._update(x, lam0, lam0 + h, hist, dn)
    for got, corr in ((xp, False), (xc, True)):
        want = float(_symbolic_step(3, "bh2", corr).subs(_h, sp.Rational(3, 10)).evalf(30))
        assert abs(float(got) - want) < 1e-12

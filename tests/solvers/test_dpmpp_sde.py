"""Stochastic DPM-Solver++: ``dpmpp_2s_ancestral``, ``dpmpp_sde``, ``dpmpp_2m_sde``,
``dpmpp_3m_sde``.

Conformance with k-diffusion 0.1.1.post1 (fixture written by
``make_kdiffusion_sde_reference.py``), ``eta = 0`` against the ODE solvers, the weak order on a
Gaussian target by the exact moment recursion of ``test_stochastic.py`` (extended to the
multistep history and to the two correlated draws of ``dpmpp_sde``), and a Monte-Carlo check
that ties the recursion to the solvers' code.
"""

import math

import pytest
import torch

import make_kdiffusion_reference as ref          # sibling scripts (tests/solvers on sys.path)
import make_kdiffusion_sde_reference as sde_ref
import test_stochastic as base
from labkit import grids
from labkit.solvers import DPMpp2M, DPMpp2S, DPMpp3M, sample
from labkit.solvers._exponential import phi
from labkit.solvers._noise import standard_normal
from labkit.solvers.dpmpp_sde import DPMpp2MSDE, DPMpp3MSDE, DPMppSDE
from labkit.solvers.dpmpp_singlestep import DPMpp2SAncestral
from labkit.solvers.euler_ancestral import ancestral_step
from labkit.testing import convergence_order

FIXTURE = sde_ref.load_fixture()
CLASSES = {"sample_dpmpp_2s_ancestral": DPMpp2SAncestral, "sample_dpmpp_sde": DPMppSDE,
           "sample_dpmpp_2m_sde": DPMpp2MSDE, "sample_dpmpp_3m_sde": DPMpp3MSDE}
ALL = (DPMpp2SAncestral, DPMppSDE, DPMpp2MSDE, DPMpp3MSDE)
# As test_stochastic.py: the same float64 formulas (labkit evaluates phi_2/phi_3 by series
# where k-diffusion uses expm1, a few ulp apart), <= 16 denoiser calls; the noise is identical.
RTOL = ATOL = 1e-12


def _x():
    return torch.tensor(FIXTURE["x"], dtype=torch.float64)


def _grid(name):
    return torch.tensor(FIXTURE["grids"][name], dtype=torch.float64)


def _gen(seed=sde_ref.NOISE_SEED):
    return torch.Generator().manual_seed(seed)


def _run(key, grid, x=None, sampling=None):
    """labkit on a fixture case: the same options and the same noise as k-diffusion's run."""
    fn, options, noise = sde_ref.SAMPLERS[key]
    x = _x() if x is None else x
    if noise == "call_order":
        sampler = sde_ref.call_order_noise_sampler(x)
        solver, gen = CLASSES[fn](noise_sampler=sampler, **options), None
    else:   # global_seed / randn_like / brownian_law: labkit's default noise from a generator
        solver, gen = CLASSES[fn](**options), _gen()
    return sample(ref.mixture_denoiser, x, grid, solver=solver, generator=gen)


# --- conformance with k-diffusion ----------------------------------------------------------

def test_fixture_inputs_are_the_scripts():
    base_fixture = ref.load_fixture()
    assert FIXTURE["x"] == base_fixture["x"] and FIXTURE["grids"] == base_fixture["grids"]
    assert FIXTURE["noise_seed"] == sde_ref.NOISE_SEED
    assert FIXTURE["samplers"] == {k: {"sampler": fn, "options": kw, "noise": noise}
                                   for k, (fn, kw, noise) in sde_ref.SAMPLERS.items()}


@pytest.mark.parametrize("grid, key", [(g, k) for g in sorted(FIXTURE["grids"])
                                       for k in sorted(sde_ref.SAMPLERS)])
def test_matches_kdiffusion_fixture(grid, key):
    out, info = _run(key, _grid(grid))
    expected = FIXTURE["outputs"][grid][key]
    torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                               rtol=RTOL, atol=ATOL)
    assert info.nfe == expected["nfe"]


def test_big_eta_case_takes_the_euler_branch():
    """The ``eta = 1.15`` fixture case covers both branches (``sigma_down = 0`` with
    ``sigma_next > 0``, and ``sigma_down > 0``) on both grids."""
    for name in FIXTURE["grids"]:
        sigmas = _grid(name)
        downs = [float(ancestral_step(sigmas[i], sigmas[i + 1], 1.15)[0])
                 for i in range(len(sigmas) - 1) if float(sigmas[i + 1]) > 0]
        assert 0.0 in downs and any(d > 0 for d in downs), name


class _IndependentZ2(DPMppSDE):
    """Planted defect: the second draw of a step independent of the first."""

    def _brownian(self, x, sigma, sigma_mid, sigma_next, generator, first):
        if first:
            return super()._brownian(x, sigma, sigma_mid, sigma_next, generator, first)
        return standard_normal(x, generator)


def test_conformance_detects_wrong_noise():
    """Negative controls: another seed, the draws of a step made independent (the Brownian
    consistency dropped), or a perturbed 2M correction miss the fixture by far more than 1e-12."""
    sigmas = _grid("karras")
    cases = [("dpmpp_2m_sde", DPMpp2MSDE(), _gen(sde_ref.NOISE_SEED + 1)),
             ("dpmpp_2s_ancestral", DPMpp2SAncestral(), _gen(sde_ref.NOISE_SEED + 1)),
             ("dpmpp_sde_brownian", _IndependentZ2(), _gen())]

    class HalfCorrection(DPMpp2MSDE):     # the midpoint correction with a wrong factor
        def __init__(self):                # h_{i-1} stored doubled: r doubled, 1/r halved
            super().__init__()
            push = self._history.push
            self._history.push = lambda entry: push((2 * entry[0], entry[1]))

    cases.append(("dpmpp_2m_sde", HalfCorrection(), _gen()))
    for key, solver, gen in cases:
        out, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver, generator=gen)
        expected = torch.tensor(FIXTURE["outputs"]["karras"][key]["x"], dtype=torch.float64)
        assert float((out - expected).abs().max()) > 1e-3, key


def test_live_against_kdiffusion():
    sampling = ref.live_sampling()
    data = ref.inputs(sampling)
    for grid, sigmas in data["grids"].items():
        live = sde_ref.run_sde_reference(sampling, data["x"], sigmas)
        for key, expected in live.items():
            out, info = _run(key, sigmas, x=data["x"])
            torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                                       rtol=RTOL, atol=ATOL)
            assert info.nfe == expected["nfe"], (grid, key)


# --- eta = 0 is the ODE ----------------------------------------------------------------------

class _Forbidden:
    def __call__(self, sigma, sigma_next):
        raise AssertionError("noise_sampler called with eta = 0")


@pytest.mark.parametrize("grid", ["karras", "custom"])
@pytest.mark.parametrize("make, ode, bitwise", [
    (lambda **k: DPMpp2SAncestral(eta=0.0, **k), DPMpp2S, True),
    (lambda **k: DPMpp3MSDE(eta=0.0, **k), DPMpp3M, True),
    # k-diffusion's 2M SDE groups the midpoint terms differently from its 2M: <= 1.1e-15 apart.
    (lambda **k: DPMpp2MSDE(eta=0.0, **k), DPMpp2M, False),
    # dpmpp_sde round-trips lambda_ -> sigma -> lambda_ at the stage: <= 4.4e-16 apart.
    (lambda **k: DPMppSDE(eta=0.0, **k), DPMpp2S, False),
])
def test_eta_zero_is_the_ode(make, ode, bitwise, grid):
    """Measured: the first two bit for bit, the last two equal to round-off but NOT bit for
    bit (asserted both ways, so a change of arithmetic is noticed). Nothing is drawn."""
    sigmas = _grid(grid)
    g = _gen(0)
    s = make(noise_sampler=_Forbidden())
    out, info = sample(ref.mixture_denoiser, _x(), sigmas, solver=s, generator=g)
    expected, info_ode = sample(ref.mixture_denoiser, _x(), sigmas, solver=ode())
    assert not s.stochastic and info.nfe == info_ode.nfe
    assert torch.equal(g.get_state(), _gen(0).get_state())
    if bitwise:
        assert torch.equal(out, expected)
    else:
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-14)
        assert not torch.equal(out, expected)


def test_eta_zero_heun_type_is_another_ode_solver():
    """``solver_type="heun"`` at ``eta = 0`` weights ``D_i - D_{i-1}`` by ``h phi_2(-h)``, not
    ``(1 - e^{-h}) / 2``: a different second-order method, O(h^3) per step from ``dpmpp_2m``."""
    sigmas = _grid("custom")
    a, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=DPMpp2MSDE(eta=0.0,
                                                                         solver_type="heun"))
    b, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=DPMpp2M())
    assert float((a - b).abs().max()) > 1e-4


def test_stochastic_flag_and_declared_properties():
    for cls in ALL:
        assert cls.stochastic and cls().stochastic and not cls(eta=0.0).stochastic
        assert cls(eta=1e-3, s_noise=0.0).stochastic          # draws, as k-diffusion does
        assert cls.order == 2.0
    assert (DPMpp2SAncestral.nfe_per_step, DPMppSDE.nfe_per_step) == (2, 2)
    assert (DPMpp2MSDE.nfe_per_step, DPMpp3MSDE.nfe_per_step) == (1, 1)
    assert DPMpp2SAncestral.name == "dpmpp_2s_ancestral" and DPMppSDE.name == "dpmpp_sde"
    assert DPMpp2MSDE.name == "dpmpp_2m_sde" and DPMpp3MSDE.name == "dpmpp_3m_sde"


# --- weak order: exact moment recursion on a Gaussian ---------------------------------------

MEAN, COV, EYE = base.MEAN, base.COV, base.EYE
ZERO = 0 * EYE


def _p(sigma):
    """``D(x, sigma) - m = P(sigma) (x - m)`` for the exact denoiser of ``N(m, S)``."""
    return COV @ torch.linalg.inv(COV + sigma ** 2 * EYE)


def _anc(s, s_next, eta):
    d, u = ancestral_step(torch.tensor(s, dtype=torch.float64),
                          torch.tensor(s_next, dtype=torch.float64), eta)
    return float(d), float(u)


def _dp1(s, s_to, dmat):
    """DPM-Solver++(1) from ``s`` to ``s_to`` as a matrix: ``(s_to/s) I + (1 - s_to/s) D``."""
    return s_to / s * EYE + (1 - s_to / s) * dmat


def _affine_step(kind, o, sig, i, z2_corr=True):
    """``([C0, C1, C2], [G_k])``: ``x_{i+1} - m = sum_j C_j (x_{i-j} - m) + sum_k G_k z_k``
    with independent standard normal ``z_k``; from the docstrings' update rules, independently
    of the solvers' code."""
    s, sn = sig[i], sig[i + 1]
    eta, s_noise = o.get("eta", 1.0), o.get("s_noise", 1.0)
    if kind == "dpmpp_2s_ancestral":
        sd, su = _anc(s, sn, eta)
        c0 = _dp1(s, 0.0, _p(s)) if sd == 0 else _dp1(s, sd, _p(math.sqrt(s * sd)) @ _dp1(
            s, math.sqrt(s * sd), _p(s)))
        return [c0, ZERO, ZERO], ([s_noise * su * EYE] if sn > 0 else [])
    if sn == 0:
        return [_p(s), ZERO, ZERO], []
    h = math.log(s / sn)
    if kind == "dpmpp_sde":
        r = o.get("r", 0.5)
        fac, ss = 1 / (2 * r), s * math.exp(-r * h)
        (sd1, su1), (sd2, su2) = _anc(s, ss, eta), _anc(s, sn, eta)
        c0 = _dp1(s, sd2, (1 - fac) * _p(s) + fac * _p(ss) @ _dp1(s, sd1, _p(s)))
        a, b = s - ss, ss - sn
        c1 = math.sqrt(a / (a + b)) if z2_corr else 0.0
        c_b = math.sqrt(b / (a + b)) if z2_corr else 1.0
        g1 = s_noise * ((1 - sd2 / s) * fac * su1 * _p(ss) + su2 * c1 * EYE)
        return [c0, ZERO, ZERO], [g1, s_noise * su2 * c_b * EYE]
    big_h = (1 + eta) * h
    noise = [s_noise * sn * math.sqrt(-math.expm1(-2 * eta * h)) * EYE]
    c = [math.exp(-big_h) * EYE + (-math.expm1(-big_h)) * _p(s), ZERO, ZERO]
    if kind == "dpmpp_2m_sde" and i >= 1:
        r = math.log(sig[i - 1] / s) / h
        w = (-0.5 * math.expm1(-big_h) if o.get("solver_type", "midpoint") == "midpoint"
             else 1 + math.expm1(-big_h) / big_h) * o.get("_c_scale", 1.0)
        c[0], c[1] = c[0] + w / r * _p(s), -w / r * _p(sig[i - 1])
    if kind == "dpmpp_3m_sde" and i >= 1:
        hh = torch.tensor(-big_h, dtype=torch.float64)
        p2, p3 = big_h * float(phi(2, hh)), big_h * float(phi(3, hh))
        r0 = math.log(sig[i - 1] / s) / h
        if i == 1:
            wts = [p2 / r0, -p2 / r0, 0.0]
        else:
            r1 = math.log(sig[i - 2] / sig[i - 1]) / h
            d10 = torch.tensor([1 / r0, -1 / r0, 0.0], dtype=torch.float64)   # weights of D_i,
            d11 = torch.tensor([0.0, 1 / r1, -1 / r1], dtype=torch.float64)   # D_{i-1}, D_{i-2}
            d1 = d10 + (d10 - d11) * r0 / (r0 + r1)
            d2 = (d10 - d11) / (r0 + r1)
            wts = (p2 * d1 + p3 * d2).tolist()
        c = [c[0] + wts[0] * _p(s), wts[1] * _p(sig[i - 1]), wts[2] * _p(sig[i - 2])]
    return c, noise


def chain_moments(kind, o, sig, noise_scale=1.0, z2_corr=True):
    """Mean and covariance of ``x_N`` for ``x_0 ~ N(m, S + sigma_0^2 I)``: the exact recursion
    on the stacked state ``(x_i, x_{i-1}, x_{i-2}) - m`` (the multistep history)."""
    d = 3
    mu = torch.zeros(3 * d, dtype=torch.float64)
    p = torch.zeros(3 * d, 3 * d, dtype=torch.float64)
    p[:d, :d] = COV + sig[0] ** 2 * EYE
    shift = torch.zeros(3 * d, 3 * d, dtype=torch.float64)
    shift[d:, :2 * d] = torch.eye(2 * d, dtype=torch.float64)
    for i in range(len(sig) - 1):
        c, g = _affine_step(kind, o, sig, i, z2_corr)
        m = shift.clone()
        m[:d] = torch.cat(c, dim=1)
        q = torch.zeros_like(p)
        for gk in g:
            q[:d, :d] += noise_scale ** 2 * gk @ gk.T
        mu, p = m @ mu, m @ p @ m.T + q
    return MEAN + mu[:d], p[:d, :d]


def weak_error(kind, o, n_steps, sigma_min=0.1, sigma_max=10.0):
    sig = grids.karras(n_steps + 1, sigma_min, sigma_max)[:-1].tolist()   # no final 0
    mu, p = chain_moments(kind, o, sig)
    return float((mu - MEAN).norm() + torch.linalg.matrix_norm(p - COV - sig[-1] ** 2 * EYE))


WEAK_CASES = [  # (kind, options); every declared weak order is 2
    ("dpmpp_2s_ancestral", {}), ("dpmpp_2s_ancestral", {"eta": 0.5}),
    ("dpmpp_sde", {}), ("dpmpp_sde", {"eta": 0.5}), ("dpmpp_sde", {"r": 1 / 3}),
    ("dpmpp_2m_sde", {}), ("dpmpp_2m_sde", {"eta": 0.5}),
    ("dpmpp_2m_sde", {"solver_type": "heun"}), ("dpmpp_2m_sde", {"solver_type": "heun",
                                                                 "eta": 0.5}),
    ("dpmpp_3m_sde", {}), ("dpmpp_3m_sde", {"eta": 0.5}),
]
KIND_CLASS = {cls.name: cls for cls in ALL}
STEPS = [32, 64, 128, 256]


@pytest.mark.parametrize("kind, opts", WEAK_CASES)
def test_weak_order(kind, opts):
    """Fitted slope within 0.3 of the declared order 2 (measured 1.81-2.13, see
    docs/solvers.md; the margin covers the local slopes' drift at these step counts, e.g.
    ``dpmpp_sde`` with ``r = 1/3``: 1.92, 1.84, 1.66 from small to large step, and
    1.99, 1.98, 1.96, 1.92 over 128-2048 steps)."""
    errors = [weak_error(kind, opts, n) for n in STEPS]
    fit = convergence_order(errors, [1 / n for n in STEPS])
    assert abs(fit.order - KIND_CLASS[kind].order) < 0.3, (fit.order, fit.local_orders)


def test_weak_order_check_detects_defects():
    """Negative controls: the 2M SDE midpoint correction at half weight drops to first order;
    the noise at half scale does not converge (the error tends to a constant)."""
    def order(kind, opts, **kw):
        errs = []
        for n in STEPS:
            sig = grids.karras(n + 1, 0.1, 10.0)[:-1].tolist()
            _, p = chain_moments(kind, opts, sig, **kw)
            errs.append(float(torch.linalg.matrix_norm(p - COV - sig[-1] ** 2 * EYE)))
        return convergence_order(errs, [1 / n for n in STEPS]).order
    assert abs(order("dpmpp_2m_sde", {"_c_scale": 0.5}) - 1.0) < 0.3
    assert abs(order("dpmpp_3m_sde", {}, noise_scale=0.5)) < 0.3


# --- Monte Carlo: the solvers' code samples the chain of the recursion ----------------------

MC_CASES = [
    (lambda: DPMpp2SAncestral(eta=0.8, s_noise=1.1), "dpmpp_2s_ancestral",
     {"eta": 0.8, "s_noise": 1.1}),
    (lambda: DPMppSDE(eta=1.0, r=0.4), "dpmpp_sde", {"eta": 1.0, "r": 0.4}),
    (lambda: DPMpp2MSDE(eta=0.8, solver_type="heun"), "dpmpp_2m_sde",
     {"eta": 0.8, "solver_type": "heun"}),
    (lambda: DPMpp3MSDE(eta=1.0, s_noise=0.9), "dpmpp_3m_sde", {"eta": 1.0, "s_noise": 0.9}),
]


@pytest.mark.parametrize("final_zero", [False, True])
@pytest.mark.parametrize("solver, kind, opts", MC_CASES)
def test_monte_carlo_matches_moment_recursion(solver, kind, opts, final_zero):
    """20 000 chains on an 8-step grid: the 9 mean and covariance statistics within 5
    standard errors of the recursion's (false-failure probability < 9 * 5.8e-7)."""
    sigmas = grids.karras(8, 0.1, 10.0)
    sigmas = sigmas if final_zero else sigmas[:-1]
    mu, p = chain_moments(kind, opts, sigmas.tolist())
    assert float(base._z_scores(base._mc(solver(), sigmas), mu, p).max()) < 5


def test_monte_carlo_check_detects_defects():
    """Negative controls: ``dpmpp_2m_sde`` with its noise halved, and ``dpmpp_sde`` with the
    two draws of a step independent (no Brownian consistency) against the recursion of the
    correct law, are rejected (|z| > 5); and the independent-draw recursion fits the
    independent-draw code (so the correlation is what the check sees)."""

    class HalfNoise(DPMpp2MSDE):
        def _noise(self, x, sigma, sigma_next, generator):
            return 0.5 * super()._noise(x, sigma, sigma_next, generator)

    sigmas = grids.karras(8, 0.1, 10.0)[:-1]
    mu, p = chain_moments("dpmpp_2m_sde", {}, sigmas.tolist())
    assert float(base._z_scores(base._mc(HalfNoise(), sigmas), mu, p).max()) > 5
    sigmas = grids.karras(4, 0.5, 10.0)[:-1]
    out = base._mc(_IndependentZ2(r=0.5), sigmas)
    mu, p = chain_moments("dpmpp_sde", {}, sigmas.tolist())
    assert float(base._z_scores(out, mu, p).max()) > 5
    mu, p = chain_moments("dpmpp_sde", {}, sigmas.tolist(), z2_corr=False)
    assert float(base._z_scores(out, mu, p).max()) < 5


# --- multistep bookkeeping, noise options, inputs --------------------------------------------

@pytest.mark.parametrize("cls", [DPMpp2MSDE, DPMpp3MSDE])
def test_history_resets_between_runs_and_lower_order_final(cls):
    sigmas = _grid("custom")
    s = cls(eta=0.5)
    a, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=s, generator=_gen(1))
    b, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=s, generator=_gen(1))
    assert torch.equal(a, b)
    c, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=cls(eta=0.5, lower_order_final=True),
                  generator=_gen(1))
    assert float((a - c).abs().max()) > 1e-6      # the last steps use lower orders


def test_noise_sampler_replaces_the_generator_and_gets_k_diffusions_arguments():
    """k-diffusion calls ``noise_sampler(sigma_i, sigma_{i+1})`` once per noisy step (twice in
    ``dpmpp_sde``: to the stage ``sigma_s`` and to ``sigma_{i+1}``); the generator is unused."""
    sigmas = _grid("custom")
    for cls, per_step in [(DPMpp2SAncestral, 1), (DPMpp2MSDE, 1), (DPMpp3MSDE, 1),
                          (DPMppSDE, 2)]:
        calls = []

        def sampler(sigma, sigma_next, calls=calls):
            calls.append((float(sigma), float(sigma_next)))
            return torch.zeros(_x().shape, dtype=torch.float64)

        g = _gen(0)
        sample(ref.mixture_denoiser, _x(), sigmas, solver=cls(noise_sampler=sampler), generator=g)
        assert torch.equal(g.get_state(), _gen(0).get_state())
        assert len(calls) == per_step * (len(sigmas) - 1)
        assert all(a > b > 0 for a, b in calls)
        assert [round(a, 12) for a, _ in calls[::per_step]] == sigmas[:-1].tolist()


def test_per_sample_generators():
    """Sample ``j`` depends only on ``generator[j]``: the first two rows of a batch of 6 equal
    a batch of 2 with the same two generators (``dpmpp_sde`` draws two tensors per step)."""
    sigmas = _grid("custom")
    for cls in ALL:
        a, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=cls(),
                      generator=[_gen(k) for k in range(6)])
        b, _ = sample(ref.mixture_denoiser, _x()[:2], sigmas, solver=cls(),
                      generator=[_gen(k) for k in range(2)])
        torch.testing.assert_close(a[:2], b, rtol=0, atol=1e-14)


def test_float32_follows_input():
    x = _x().float()
    for cls in ALL:
        out, _ = sample(ref.mixture_denoiser, x, _grid("karras").float(), solver=cls(),
                        generator=_gen())
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("make, err, match", [
    (lambda: DPMpp2SAncestral(eta=-0.1), ValueError, "eta"),
    (lambda: DPMppSDE(eta=float("nan")), ValueError, "eta"),
    (lambda: DPMpp2MSDE(eta="1"), TypeError, "eta"),
    (lambda: DPMpp3MSDE(s_noise=-1.0), ValueError, "s_noise"),
    (lambda: DPMpp2MSDE(solver_type="euler"), ValueError, "solver_type"),
    (lambda: DPMpp2MSDE(lower_order_final=1), TypeError, "lower_order_final"),
    (lambda: DPMpp3MSDE(lower_order_final="yes"), TypeError, "lower_order_final"),
    (lambda: DPMppSDE(noise_sampler=3), TypeError, "noise_sampler"),
    (lambda: DPMpp2SAncestral(noise_sampler="randn"), TypeError, "noise_sampler"),
    (lambda: DPMppSDE(r=0.0), ValueError, "r must"),
    (lambda: DPMppSDE(r=1.5), ValueError, "r must"),
    (lambda: DPMppSDE(r=True), TypeError, "r must"),
    (lambda: DPMpp3MSDE(order=3), TypeError, "unknown options"),
])
def test_bad_options(make, err, match):
    with pytest.raises(err, match=match):
        make()


def test_noise_sampler_output_checked():
    bad = DPMpp2MSDE(noise_sampler=lambda s, sn: torch.zeros(3))
    with pytest.raises(ValueError, match="noise_sampler"):
        sample(ref.mixture_denoiser, _x(), _grid("custom"), solver=bad)

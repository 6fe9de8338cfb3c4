"""Stochastic samplers: churned ``euler``/``heun``, ``euler_ancestral``, ``euler_maruyama``.

Conformance with k-diffusion (fixture written by ``make_kdiffusion_reference.py``), reduction
to the ODE when the noise is off, and the WEAK order on a Gaussian target: with the exact
(linear) denoiser every step is an affine map plus independent Gaussian noise, so the chain's
mean and covariance follow an exact matrix recursion, compared with the exact marginal
``N(m, S + sigma_end^2 I)``. A Monte-Carlo check ties the recursion to the solvers' code.
"""

import math

import pytest
import torch

import labkit
import make_kdiffusion_reference as ref  # sibling script; pytest puts tests/solvers on sys.path
from labkit import grids
from labkit.solvers import Euler, Heun, sample
from labkit.solvers.euler_ancestral import EulerAncestral, ancestral_step
from labkit.solvers.euler_maruyama import EulerMaruyama
from labkit.testing import convergence_order

FIXTURE = ref.load_fixture()
STOCH = FIXTURE["stochastic"]
CLASSES = {"sample_euler": Euler, "sample_heun": Heun, "sample_euler_ancestral": EulerAncestral}
# As in test_kdiffusion_conformance.py: the same float64 formulas, a few ulp per operation over
# <= 15 denoiser calls with O(10) Lipschitz constants. The noise is bit-identical (see below).
RTOL = ATOL = 1e-12


def _x():
    return torch.tensor(FIXTURE["x"], dtype=torch.float64)


def _solver(key):
    spec = STOCH["samplers"][key]
    return CLASSES[spec["sampler"]](**spec["options"])


def _gen(seed=STOCH["noise_seed"]):
    return torch.Generator().manual_seed(seed)


# --- conformance with k-diffusion ----------------------------------------------------------

def test_generator_stream_is_kdiffusions():
    """``torch.manual_seed(s)`` + ``randn_like`` (k-diffusion) and a Generator seeded ``s``
    give the same CPU stream, in float64 and float32: the basis of the fixture comparison."""
    for dtype in (torch.float64, torch.float32):
        x = torch.zeros(6, 2, dtype=dtype)
        torch.manual_seed(7)
        a = [torch.randn_like(x) for _ in range(3)]
        g = _gen(7)
        b = [torch.randn(x.shape, generator=g, dtype=dtype) for _ in range(3)]
        assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_stochastic_fixture_inputs_are_the_scripts():
    assert STOCH["noise_seed"] == ref.NOISE_SEED
    assert STOCH["samplers"] == {k: {"sampler": fn, "options": kw}
                                 for k, (fn, kw) in ref.STOCHASTIC.items()}
    assert set(STOCH["outputs"]) == set(FIXTURE["grids"])


@pytest.mark.parametrize("grid, key", [(g, k) for g in sorted(FIXTURE["grids"])
                                       for k in sorted(ref.STOCHASTIC)])
def test_matches_kdiffusion_fixture(grid, key):
    sigmas = torch.tensor(FIXTURE["grids"][grid], dtype=torch.float64)
    out, info = sample(ref.mixture_denoiser, _x(), sigmas, solver=_solver(key), generator=_gen())
    expected = STOCH["outputs"][grid][key]
    torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                               rtol=RTOL, atol=ATOL)
    assert info.nfe == expected["nfe"]


def test_conformance_detects_wrong_noise():
    """Negative control: another seed, or churn without the draws outside [s_tmin, s_tmax]
    (a misaligned stream), misses the fixture by far more than the tolerance."""
    sigmas = torch.tensor(FIXTURE["grids"]["karras"], dtype=torch.float64)
    expected = torch.tensor(STOCH["outputs"]["karras"]["euler_churn_window"]["x"],
                            dtype=torch.float64)

    class NoDrawOutsideWindow(Euler):
        def step(self, denoiser, x, i, sigmas, generator):
            c = self.churn
            if not c.s_tmin <= float(sigmas[i]) <= c.s_tmax:
                return Euler().step(denoiser, x, i, sigmas, generator)
            return super().step(denoiser, x, i, sigmas, generator)

    opts = STOCH["samplers"]["euler_churn_window"]["options"]
    for solver, gen in [(Euler(**opts), _gen(STOCH["noise_seed"] + 1)),
                        (NoDrawOutsideWindow(**opts), _gen())]:
        out, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver, generator=gen)
        with pytest.raises(AssertionError):
            torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)


def test_live_against_kdiffusion():
    sampling = ref.live_sampling()
    data = ref.inputs(sampling)
    for grid, sigmas in data["grids"].items():
        live = ref.run_stochastic_reference(sampling, data["x"], sigmas)
        for key, expected in live.items():
            out, info = sample(ref.mixture_denoiser, data["x"], sigmas, solver=_solver(key),
                               generator=_gen())
            torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                                       rtol=RTOL, atol=ATOL)
            assert info.nfe == expected["nfe"], (grid, key)


# --- zero noise is the ODE -------------------------------------------------------------------

@pytest.mark.parametrize("solver, ode", [
    (lambda: Euler(s_churn=0.0, s_tmin=0.5, s_noise=3.0), Euler),
    (lambda: Heun(s_churn=0.0, s_noise=0.0), Heun),
    (lambda: Euler(s_churn=5.0, s_noise=0.0), None),        # churn without noise: not Euler
    (lambda: EulerAncestral(eta=0.0), Euler),
    (lambda: EulerAncestral(eta=1.0, s_noise=0.0), None),   # Euler to sigma_down: not Euler
    (lambda: EulerMaruyama(langevin=0.0), Euler),
])
@pytest.mark.parametrize("grid", ["karras", "custom"])
def test_zero_noise_reduces_to_the_ode(solver, ode, grid):
    """Bit-identical to the ODE solver (rtol = atol = 0), and no noise is drawn; the cases
    marked ``None`` are controls that differ from Euler although they draw no real noise."""
    sigmas = torch.tensor(FIXTURE["grids"][grid], dtype=torch.float64)
    s = solver()
    g = _gen(0)
    out, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=s, generator=g)
    base, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=(ode or Euler)())
    if ode is None:
        assert s.stochastic
        assert float((out - base).abs().max()) > 1e-3
    else:
        assert not s.stochastic
        torch.testing.assert_close(out, base, rtol=0, atol=0)
        assert torch.equal(g.get_state(), _gen(0).get_state())  # stream untouched


def test_default_options_are_deterministic():
    assert not Euler().stochastic and not Heun().stochastic
    assert Euler(s_churn=1.0).stochastic and Heun(s_churn=1.0).stochastic
    assert EulerAncestral().stochastic and EulerMaruyama().stochastic
    assert EulerAncestral.stochastic and EulerMaruyama.stochastic and not Euler.stochastic


# --- weak order: exact moment recursion on a Gaussian ---------------------------------------

MEAN = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
COV = torch.tensor([[1.0, 0.3, 0.0], [0.3, 0.5, -0.1], [0.0, -0.1, 0.2]], dtype=torch.float64)
EYE = torch.eye(3, dtype=torch.float64)


def _k(sigma):
    """``d(x, sigma) = K (x - m)`` for the exact denoiser
    ``D(x, sigma) = m + S (S + sigma^2 I)^-1 (x - m)``."""
    return (EYE - COV @ torch.linalg.inv(COV + sigma ** 2 * EYE)) / sigma


def _affine_step(kind, opts, sigmas, i):
    """``(A, Q)``: one step maps ``x - m`` to ``A (x - m) + noise``, noise ~ ``N(0, Q)``.

    Written from the update rules in the docstrings, independently of the solvers' code."""
    s, s_next, n = sigmas[i], sigmas[i + 1], len(sigmas) - 1
    if kind in ("euler", "heun"):
        churn, s_noise = opts.get("s_churn", 0.0), opts.get("s_noise", 1.0)
        window = opts.get("s_tmin", 0.0) <= s <= opts.get("s_tmax", math.inf)
        gamma = min(churn / n, 2 ** 0.5 - 1) if window else 0.0
        s_hat = s * (1 + gamma)
        h = s_next - s_hat
        a = EYE + h * _k(s_hat)
        if kind == "heun" and s_next > 0:
            a = EYE + h / 2 * (_k(s_hat) + _k(s_next) @ (EYE + h * _k(s_hat)))
        # Churn noise enters before the ODE step: variance s_noise^2 (s_hat^2 - s^2).
        return a, s_noise ** 2 * (s_hat ** 2 - s ** 2) * a @ a.T
    if kind == "euler_ancestral":
        down, up = ancestral_step(torch.tensor(s), torch.tensor(s_next), opts.get("eta", 1.0))
        up = float(up) * opts.get("s_noise", 1.0) if s_next > 0 else 0.0
        return EYE + (float(down) - s) * _k(s), up ** 2 * EYE
    if kind == "euler_maruyama":
        lam, h = opts.get("langevin", 1.0), s_next - s
        if s_next == 0:
            return EYE + h * _k(s), 0 * EYE
        return EYE + (1 + lam) * h * _k(s), 2 * lam * s * -h * EYE
    raise AssertionError(kind)


def chain_moments(kind, opts, sigmas, noise_scale=1.0):
    """Mean and covariance of ``x_N`` when ``x_0 ~ N(m, S + sigma_0^2 I)`` (the exact marginal),
    by the exact recursion ``mu <- A (mu - m) + m``, ``P <- A P A^T + noise_scale^2 Q``."""
    mu, p = MEAN.clone(), COV + sigmas[0] ** 2 * EYE
    for i in range(len(sigmas) - 1):
        a, q = _affine_step(kind, opts, sigmas, i)
        mu, p = MEAN + a @ (mu - MEAN), a @ p @ a.T + noise_scale ** 2 * q
    return mu, p


def weak_error(kind, opts, n_steps, sigma_min=0.1, sigma_max=10.0):
    sigmas = grids.karras(n_steps + 1, sigma_min, sigma_max)[:-1].tolist()  # no final 0
    mu, p = chain_moments(kind, opts, sigmas)
    exact = COV + sigmas[-1] ** 2 * EYE
    return float((mu - MEAN).norm() + torch.linalg.matrix_norm(p - exact))


WEAK_CASES = [  # (kind, options, declared weak order)
    ("euler", {"s_churn": 1.0}, Euler.order),
    ("heun", {"s_churn": 1.0}, Heun.order),
    ("heun", {"s_churn": 3.0, "s_tmin": 0.3, "s_tmax": 5.0, "s_noise": 1.0}, Heun.order),
    ("euler_ancestral", {}, EulerAncestral.order),
    ("euler_ancestral", {"eta": 0.5}, EulerAncestral.order),
    ("euler_maruyama", {}, EulerMaruyama.order),
    ("euler_maruyama", {"langevin": 3.0}, EulerMaruyama.order),
]
STEPS = [32, 64, 128, 256]


@pytest.mark.parametrize("kind, opts, declared", WEAK_CASES)
def test_weak_order(kind, opts, declared):
    """Fitted slope of the exact moment error within 0.3 of the declared order (measured:
    0.98-1.04 for the first-order methods, 2.01-2.02 for churned Heun; churn with
    ``s_noise = 1`` noises exactly along the forward process, so it keeps the ODE's order)."""
    errors = [weak_error(kind, opts, n) for n in STEPS]
    fit = convergence_order(errors, [1 / n for n in STEPS])
    assert abs(fit.order - declared) < 0.3, (fit.order, fit.local_orders)


def test_weak_order_check_detects_inconsistent_noise():
    """Negative control: Euler-Maruyama whose moments carry the noise at half scale does not
    converge at all (the error tends to a constant, fitted order near 0)."""
    def err(n):
        sigmas = grids.karras(n + 1, 0.1, 10.0)[:-1].tolist()
        mu, p = chain_moments("euler_maruyama", {}, sigmas, noise_scale=0.5)
        return float(torch.linalg.matrix_norm(p - COV - sigmas[-1] ** 2 * EYE))
    fit = convergence_order([err(n) for n in STEPS], [1 / n for n in STEPS])
    assert abs(fit.order - 1.0) > 0.5


# --- Monte Carlo: the solvers' code samples the chain of the recursion ----------------------

N_MC = 20_000
MC_CASES = [
    (lambda: Euler(s_churn=3.0, s_tmin=0.3, s_tmax=5.0, s_noise=1.1), "euler",
     {"s_churn": 3.0, "s_tmin": 0.3, "s_tmax": 5.0, "s_noise": 1.1}),
    (lambda: Heun(s_churn=2.0, s_noise=0.9), "heun", {"s_churn": 2.0, "s_noise": 0.9}),
    (lambda: EulerAncestral(eta=0.7, s_noise=1.2), "euler_ancestral",
     {"eta": 0.7, "s_noise": 1.2}),
    (lambda: EulerMaruyama(langevin=2.0), "euler_maruyama", {"langevin": 2.0}),
]


def _z_scores(samples, mu, p):
    """Standardised errors of the sample mean (se ``sqrt(P_jj / n)``) and of the sample
    covariance entries (se ``sqrt((P_jk^2 + P_jj P_kk) / n)``, Gaussian fourth moments)."""
    n = samples.shape[0]
    z_mean = (samples.mean(0) - mu) / (p.diagonal() / n).sqrt()
    se_cov = ((p ** 2 + torch.outer(p.diagonal(), p.diagonal())) / n).sqrt()
    iu = torch.triu_indices(3, 3)
    z_cov = ((torch.cov(samples.T) - p) / se_cov)[iu[0], iu[1]]
    return torch.cat([z_mean, z_cov]).abs()


def _mc(solver, sigmas, seed=11):
    g = _gen(seed)
    start = labkit.Gaussian(MEAN, COV + float(sigmas[0]) ** 2 * EYE).sample(N_MC, generator=g)
    out, _ = sample(labkit.Gaussian(MEAN, COV), start, sigmas, solver=solver, generator=g)
    return out


@pytest.mark.parametrize("final_zero", [False, True])
@pytest.mark.parametrize("solver, kind, opts", MC_CASES)
def test_monte_carlo_matches_moment_recursion(solver, kind, opts, final_zero):
    """Sample moments of 20 000 chains within 5 standard errors of the recursion's: 9
    statistics, asymptotically normal, so a false failure has probability < 9 * 5.8e-7."""
    sigmas = grids.karras(8, 0.1, 10.0)
    sigmas = sigmas if final_zero else sigmas[:-1]
    mu, p = chain_moments(kind, opts, sigmas.tolist())
    assert float(_z_scores(_mc(solver(), sigmas), mu, p).max()) < 5


def test_monte_carlo_check_detects_half_noise():
    """Negative control: Euler-Maruyama with its noise scaled by 0.5 (the real step, with the
    noise increment halved) is rejected by the same check, by a wide margin."""

    class HalfNoise(EulerMaruyama):
        def step(self, denoiser, x, i, sigmas, generator):
            s, s_next = sigmas[i], sigmas[i + 1]
            drift = x + (1 + self.langevin) * (s_next - s) * (x - denoiser(x, s)) / s
            return 0.5 * super().step(denoiser, x, i, sigmas, generator) + 0.5 * drift

    sigmas = grids.karras(8, 0.1, 10.0)[:-1]
    mu, p = chain_moments("euler_maruyama", {"langevin": 2.0}, sigmas.tolist())
    assert float(_z_scores(_mc(HalfNoise(langevin=2.0), sigmas), mu, p).max()) > 20


# --- reproducibility and input checks -------------------------------------------------------

@pytest.mark.parametrize("solver", [lambda: Euler(s_churn=1.0), lambda: Heun(s_churn=1.0),
                                    EulerAncestral, EulerMaruyama])
def test_same_seed_same_samples(solver):
    sigmas = torch.tensor(FIXTURE["grids"]["karras"], dtype=torch.float64)
    a, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver(), generator=_gen(3))
    b, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver(), generator=_gen(3))
    c, _ = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver(), generator=_gen(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_float32_follows_input():
    x = _x().float()
    sigmas = torch.tensor(FIXTURE["grids"]["custom"])
    for solver in (Euler(s_churn=1.0), Heun(s_churn=1.0), EulerAncestral(), EulerMaruyama()):
        out, _ = sample(ref.mixture_denoiser, x, sigmas, solver=solver, generator=_gen())
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())


@pytest.mark.parametrize("make, err, match", [
    (lambda: Euler(s_churn=-1.0), ValueError, "s_churn"),
    (lambda: Heun(s_churn=float("nan")), ValueError, "s_churn"),
    (lambda: Euler(s_churn="1"), TypeError, "s_churn"),
    (lambda: Heun(s_noise=-0.1), ValueError, "s_noise"),
    (lambda: Euler(s_tmin=2.0, s_tmax=1.0), ValueError, "s_tmin"),
    (lambda: Euler(s_tmin=float("inf")), ValueError, "s_tmin"),
    (lambda: Heun(s_tmax=True), TypeError, "s_tmax"),
    (lambda: EulerAncestral(eta=-0.5), ValueError, "eta"),
    (lambda: EulerAncestral(s_noise=float("inf")), ValueError, "s_noise"),
    (lambda: EulerMaruyama(langevin=-1.0), ValueError, "langevin"),
    (lambda: EulerMaruyama(langevin=None), TypeError, "langevin"),
    (lambda: EulerMaruyama(churn=1.0), TypeError, "unknown options"),
])
def test_bad_input(make, err, match):
    with pytest.raises(err, match=match):
        make()

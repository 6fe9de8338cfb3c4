"""Property tests over EVERY registered solver (``labkit.solvers.SOLVERS``) and its options.

The cases are built from the registry at import time, so a solver registered later is covered
automatically with its default options; ``OPTIONS`` adds option settings for the solvers whose
options are known, and ``lower_order_final=True`` is added for every solver whose constructor
takes it. Hypothesis draws 2-3-D Gaussian mixtures (``labkit.testing.strategies``), grids
(``sigma_grids`` and a local strategy with log-steps whose ratios reach 1e3, single steps, grids
ending at 0 and above 0), float32/float64 and small batches, and checks:

- the output is finite, with the input's shape, dtype and device;
- ``info.nfe`` equals the denoiser calls counted by an independent wrapper, and the calls made
  in each step equal the solver's documented per-step rule (``NFE_RULES``: ``nfe_per_step``
  except the documented exceptions, e.g. one call on the step to 0 for Heun-type solvers); an
  adaptive solver has no per-step rule, only the independent count is checked;
- deterministic solvers give the same bits with any generator and do not touch it; stochastic
  solvers repeat bit for bit with the same seed and differ with another seed;
- DDIM equals Euler in sigma to round-off;
- on a Gaussian target with a grid ending at 0 every solver lands near the target (sanity).
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import labkit
from labkit.solvers import SOLVERS, sample
from labkit.solvers.base import Solver
from labkit.testing.strategies import gaussian_mixtures, gaussians, sigma_grids

# Option settings per registry name, besides the defaults. Names absent here run with their
# defaults only (plus ``lower_order_final=True`` when the constructor accepts it).
CHURN = [{"s_churn": 1.0}, {"s_churn": 5.0, "s_tmin": 0.01, "s_tmax": 50.0, "s_noise": 1.003}]
ETA = [{"eta": 0.0}, {"eta": 0.5, "s_noise": 0.9}]
OPTIONS: dict[str, list[dict]] = {
    "euler": CHURN,
    "heun": CHURN,
    "lms": [{"order": q} for q in (1, 2, 3)],                       # default 4
    "lms_corrected": [{"order": q} for q in (1, 2, 3)],
    "dpm_solver": [{"order": 1}, {"order": 2}],                     # default 3
    "euler_ancestral": ETA,
    "euler_maruyama": [{"langevin": 0.0}, {"langevin": 2.5}],
    "unipc": [{"order": 1}, {"order": 3}, {"corrector": False}, {"variant": "bh1"}],
    "deis": [{"order": 1}, {"order": 4}, {"variable": "rho"}],
    "deis_corrected": [{"order": 4}, {"variable": "rho"}],
    "ipndm": [{"order": q} for q in (1, 2, 3)],
    "ipndm_v": [{"order": q} for q in (1, 2, 3)],
    "dpm_adaptive": [{"order": 2}],
    "ddpm": [{"variance": "beta"}],
    "langevin_pc": [{"predictor": "euler_maruyama"}, {"predictor": "ddpm"},
                    {"predictor": "none"}, {"n_corrector": 0}, {"n_corrector": 2, "snr": 0.1}],
    "dpmpp_2s_ancestral": ETA,
    "dpmpp_sde": [{"eta": 0.0}, {"r": 0.3}],
    "dpmpp_2m_sde": [{"eta": 0.0}, {"solver_type": "heun"}],
    "dpmpp_3m_sde": [{"eta": 0.0}],
}


def _cases() -> list:
    cases = []
    for name, cls in SOLVERS.items():
        settings_ = [{}, *OPTIONS.get(name, [])]
        if "lower_order_final" in inspect.signature(cls.__init__).parameters:
            settings_.append({"lower_order_final": True})
        for opts in settings_:
            label = ",".join(f"{k}={v}" for k, v in opts.items())
            cases.append(pytest.param(name, opts, id=f"{name}[{label}]" if label else name))
    return cases


CASES = _cases()


# ---------------------------------------------------------------------------------- NFE rules
def _to_zero(sigmas, i):
    return float(sigmas[i + 1]) == 0


def _one_per_step(solver, sigmas, i):
    return 1


def _one_on_step_to_zero(solver, sigmas, i):
    """``nfe_per_step`` calls, one on the step to 0 (Heun, DPM-2, DPM-Solver, DPM++(2S),
    DPM++ SDE, ancestral DPM++(2S) with ``eta <= 1``, Langevin PC)."""
    return 1 if _to_zero(sigmas, i) else solver.nfe_per_step


def _dpmpp_3m_corrected(solver, sigmas, i):
    """One call per step, two on the first step (a DPM++(2S) step) unless it is the step to 0
    or, with ``lower_order_final``, the only step (code: ``multistep_order(2, 1, 0, N, lof)``)."""
    n_steps = len(sigmas) - 1
    second_order_first = not (solver.lower_order_final and n_steps == 1)
    return 2 if i == 0 and not _to_zero(sigmas, i) and second_order_first else 1


def _lms_corrected(solver, sigmas, i):
    """``q`` calls (an RK step of order q) on the first ``q - 1`` steps, except a step to 0."""
    q = solver.lms_order
    return q if i < q - 1 and not _to_zero(sigmas, i) else 1


def _deis_corrected(solver, sigmas, i):
    """``order - 1`` calls on the first ``order - 1`` steps when ``order > 2``, except to 0."""
    q = solver.deis_order
    return q - 1 if q > 2 and i < q - 1 and not _to_zero(sigmas, i) else 1


# Per-step denoiser calls, from each solver's docstring. ``None``: adaptive, no per-step rule.
NFE_RULES = {
    **{name: _one_per_step for name in (
        "euler", "ddim", "lms", "dpmpp_2m", "dpmpp_3m", "euler_ancestral", "euler_maruyama",
        "unipc", "deis", "ipndm", "ipndm_v", "ddpm", "dpmpp_2m_sde", "dpmpp_3m_sde")},
    **{name: _one_on_step_to_zero for name in (
        "heun", "dpm_2", "dpm_solver", "dpmpp_2s", "dpmpp_sde", "dpmpp_2s_ancestral",
        "langevin_pc")},
    "dpmpp_3m_corrected": _dpmpp_3m_corrected,
    "lms_corrected": _lms_corrected,
    "deis_corrected": _deis_corrected,
    "dpm_adaptive": None,
}


def _expected_calls(name, solver, sigmas, i):
    """``(lo, hi)`` bounds on the calls of step ``i`` (equal when the rule is exact)."""
    rule = NFE_RULES.get(name, "generic")
    if rule is None:
        return None
    if rule == "generic":
        # A solver registered after this file was written: nfe_per_step per step, between 1
        # and nfe_per_step on the step to 0. Encode its exact rule in NFE_RULES.
        k = solver.nfe_per_step
        return (1, k) if _to_zero(sigmas, i) else (k, k)
    k = rule(solver, sigmas, i)
    return k, k


# ---------------------------------------------------------------------------------- strategies
@st.composite
def uneven_grids(draw, max_steps=6):
    """Valid grids whose log-sigma steps differ by factors up to 1e3, in any order.

    ``N`` in 1..max_steps; ``sigma_max`` in [1, 80], ``sigma_min`` in [2e-3, 0.5]; relative
    log-gaps ``exp(u)``, ``u`` in ``[log 1e-3, 0]``. The smallest relative log-step is
    ``>= 1e-3 / (max_steps - 1 + 1e-3) * log 2 > 1e-4``, far above float32's 6e-8, so the grid
    stays strictly decreasing in float32.
    """
    n = draw(st.integers(1, max_steps))
    zero = draw(st.booleans())
    n_pos = n if zero else n + 1
    hi = draw(st.floats(0.0, math.log(80.0)))
    if n_pos == 1:
        positive = torch.tensor([hi], dtype=torch.float64)
    else:
        lo = draw(st.floats(math.log(2e-3), math.log(0.5)))
        gaps = torch.tensor(draw(st.lists(st.floats(math.log(1e-3), 0.0), min_size=n_pos - 1,
                                          max_size=n_pos - 1)), dtype=torch.float64).exp()
        c = gaps.cumsum(0)
        positive = torch.cat([torch.tensor([hi], dtype=torch.float64),
                              hi - (c / c[-1]) * (hi - lo)])
    grid = positive.exp()
    if zero:
        grid = torch.cat([grid, grid.new_zeros(1)])
    return grid


GRIDS = st.one_of(uneven_grids(), sigma_grids(1, 6, sigma_max_range=(1.0, 80.0)))
MIXTURES = gaussian_mixtures(dim=st.integers(2, 3), max_components=3)
DTYPES = st.sampled_from([torch.float64, torch.float32])
SEEDS = st.integers(0, 2 ** 31 - 1)


class CountingWrapper:
    """Counts denoiser calls independently of ``CountingDenoiser`` and checks their arguments."""

    def __init__(self, target, dtype):
        self.target, self.dtype, self.calls = target, dtype, 0

    def __call__(self, x, sigma):
        self.calls += 1
        assert x.dtype == self.dtype and sigma.shape == (x.shape[0],)
        assert bool(torch.isfinite(x).all()), "the solver passed a non-finite state to D"
        assert bool((sigma > 0).all()), "the solver called D at sigma <= 0"
        return self.target(x, sigma)


def _run(target, x, sigmas, name, opts, generator):
    """Run ``name`` and return ``(out, info, calls per step, the solver instance)``."""
    solver = SOLVERS[name](**opts)
    model = CountingWrapper(target, x.dtype)
    per_step, seen = [], [0]

    def callback(state):
        per_step.append(model.calls - seen[0])
        seen[0] = model.calls

    out, info = sample(model, x, sigmas, solver=solver, generator=generator, callback=callback)
    assert info.nfe == model.calls, (info.nfe, model.calls)
    return out, info, per_step, solver


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------- properties
# Explicit edge cases run for every case besides the random ones: a single step to 0 (float32),
# a single step ending above 0, and grids whose consecutive log-steps differ by factors of
# ~1e3 to ~6e3, ending at 0 (float32) and above 0; a 2-D mixture with a rank-1 component and a
# 3-D one with a point mass.
_EDGE_MIX2 = labkit.GaussianMixture(torch.tensor([[-1.5, 0.0], [1.0, 1.0]]),
                                    torch.tensor([[[0.5, 0.5], [0.5, 0.5]],
                                                  [[0.3, 0.1], [0.1, 0.2]]]), weights=[0.3, 0.7])
_EDGE_MIX3 = labkit.GaussianMixture(torch.tensor([[0.0, 1.0, -1.0], [2.0, 0.0, 1.0]]),
                                    torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.2, 3.0]]))
_F64 = torch.float64
EDGE_CASES = [
    dict(target=_EDGE_MIX2, sigmas=torch.tensor([5.0, 0.0], dtype=_F64), dtype=torch.float32,
         n=3, seed=1),
    dict(target=_EDGE_MIX3, sigmas=torch.tensor([2.0, 0.7], dtype=_F64), dtype=_F64, n=2, seed=2),
    # log-steps 1e-3, 4.38, 1e-3, 6.2, then 0
    dict(target=_EDGE_MIX2, sigmas=torch.tensor([80.0, 79.92, 1.0, 0.999, 0.002, 0.0],
                                                dtype=_F64), dtype=torch.float32, n=4, seed=3),
    # log-steps 3.7, 1e-3, 2.3, 1e-3, ending above 0
    dict(target=_EDGE_MIX3, sigmas=torch.tensor([20.0, 0.5, 0.4995, 0.05, 0.04995], dtype=_F64),
         dtype=_F64, n=4, seed=4),
]


def _check_invariants(name, opts, target, sigmas, dtype, n, seed):
    x = float(sigmas[0]) * torch.randn(n, target.dim, generator=_gen(seed), dtype=torch.float64)
    x = x.to(dtype)
    out, info, per_step, solver = _run(target, x, sigmas, name, opts, _gen(seed + 1))

    assert bool(torch.isfinite(out).all()), f"{name}{opts}: non-finite output on {sigmas}"
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert len(per_step) == len(sigmas) - 1
    assert sum(per_step) == info.nfe
    for i, calls in enumerate(per_step):
        bounds = _expected_calls(name, solver, sigmas, i)
        if bounds is not None:
            assert bounds[0] <= calls <= bounds[1], (
                f"{name}{opts}: step {i} of {sigmas.tolist()} made {calls} denoiser calls, "
                f"the documented rule says {bounds}")

    other = _gen(seed + 2)
    state = other.get_state()
    alt, _, _, _ = _run(target, x, sigmas, name, opts, other)
    if not solver.stochastic:
        assert torch.equal(out, alt), f"deterministic {name}{opts} depends on the generator"
        assert torch.equal(other.get_state(), state), f"deterministic {name}{opts} drew noise"
        return
    again, _, _, _ = _run(target, x, sigmas, name, opts, _gen(seed + 1))
    assert torch.equal(out, again), f"stochastic {name}{opts} does not repeat with its seed"
    if float(sigmas[1]) > 0:
        # At least one step lands on sigma > 0, where every stochastic solver adds noise.
        assert not torch.equal(out, alt), f"stochastic {name}{opts} ignores the generator"


@pytest.mark.parametrize("edge", range(len(EDGE_CASES)))
@pytest.mark.parametrize("name, opts", CASES)
def test_solver_invariants_edge_cases(name, opts, edge):
    """Every case (solver x option setting) on every edge case."""
    _check_invariants(name, opts, **EDGE_CASES[edge])


@given(case=st.sampled_from([c.values for c in CASES]), target=MIXTURES, sigmas=GRIDS,
       dtype=DTYPES, n=st.integers(1, 4), seed=SEEDS)
def test_solver_invariants_random(case, target, sigmas, dtype, n, seed):
    """Random cases on random mixtures, grids, dtypes and batches (the profile's examples)."""
    _check_invariants(*case, target, sigmas, dtype, n, seed)


@given(target=MIXTURES, sigmas=GRIDS, dtype=DTYPES, n=st.integers(1, 4), seed=SEEDS)
def test_ddim_equals_euler_in_sigma(target, sigmas, dtype, n, seed):
    """``D + (s'/s)(x - D)`` and ``x + (s' - s)(x - D)/s`` are the same number up to round-off.

    Tolerance: each step differs by a few ulp of ``|x| + |D|``, and the step maps are
    contractions in the deviation from ``D`` (factor ``s'/s < 1``), so over <= 6 steps the
    difference stays below ``200 eps (|x_0| + 10)`` (the mixture means are within 4*sqrt(3)).
    """
    x = (float(sigmas[0]) * torch.randn(n, target.dim, generator=_gen(seed),
                                        dtype=torch.float64)).to(dtype)
    a, _ = sample(target, x, sigmas, solver="ddim")
    b, _ = sample(target, x, sigmas, solver="euler")
    tol = 200 * torch.finfo(dtype).eps * (float(x.abs().max()) + 10.0)
    assert float((a - b).abs().max()) <= tol


def test_ddim_euler_check_catches_a_different_solver():
    """Negative control: the same tolerance separates DDIM from a second-order solver."""
    mix = labkit.GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 1.0]]), torch.tensor([0.3, 0.5]))
    sigmas = torch.tensor([10.0, 2.0, 0.5, 0.0], dtype=torch.float64)
    x = 10.0 * torch.randn(4, 2, generator=_gen(0), dtype=torch.float64)
    a, _ = sample(mix, x, sigmas, solver="ddim")
    b, _ = sample(mix, x, sigmas, solver="dpmpp_2m")
    assert float((a - b).abs().max()) > 200 * torch.finfo(torch.float64).eps * 50


# Sanity bound on a Gaussian N(m, S): with ``x0 = sigma_max z`` the exact flow gives
# ``y - m = U diag(sqrt(l / (l + sigma_max^2))) U^T (x0 - m)``, so
# ``|y - m| <= sqrt(l_max) (|z| + |m| / sigma_max)``; exact samples of N(m, S) satisfy
# ``|y - m| <= sqrt(l_max) (sqrt(d) + t)`` except with probability ``exp(-t^2 / 2)`` (t = 4:
# 3e-4 per row). A solver that is not broken stays within a small multiple of the sum:
# SANITY_FACTOR = 4 allows first-order errors of O(1) relative size and the noise of stochastic
# solvers; an identity map (y = x0, |y - m| ~ sigma_max |z|) or a sign error in the drift fails
# it (negative control below). The grids are Karras grids with 16-32 steps: explicit SDE steps
# are only stable for ``(1 + langevin) |h| / sigma < 2`` (Euler-Maruyama; the reverse-diffusion
# predictor similarly keeps noise of size ``sigma_i`` after one huge step), so a coarse or very
# uneven grid legitimately leaves a stochastic sampler far from the target.
SANITY_FACTOR = 4.0
# Configurations that are not samplers on such grids by design (checked for finiteness only).
SANITY_EXEMPT = {
    ("langevin_pc", (("predictor", "none"),)):
        "annealed Langevin dynamics with one corrector step per level barely moves from "
        "x0 = sigma_max z (step size 2 (snr |z| / |score|)^2 ~ 0.05 sigma^2 per level); it "
        "needs ~100 corrector steps per level (Song & Ermon 2019)",
}


def _sanity_bound(target, x, sigma_max):
    lam_max = float(torch.linalg.eigvalsh(target.cov).max())
    z = x / sigma_max
    d = x.shape[1]
    return SANITY_FACTOR * math.sqrt(lam_max) * (z.norm(dim=1) + float(target.mean.norm())
                                                 / sigma_max + math.sqrt(d) + 4.0)


def _check_sanity(name, opts, target, sigmas, seed):
    x = float(sigmas[0]) * torch.randn(4, target.dim, generator=_gen(seed), dtype=torch.float64)
    out, _, _, _ = _run(target, x, sigmas, name, opts, _gen(seed + 1))
    assert bool(torch.isfinite(out).all())
    if (name, tuple(sorted(opts.items()))) in SANITY_EXEMPT:
        return
    dist = (out - target.mean).norm(dim=1)
    bound = _sanity_bound(target, x, float(sigmas[0]))
    assert bool((dist <= bound).all()), (
        f"{name}{opts}: |y - m| = {dist.tolist()} exceeds {bound.tolist()} on {sigmas.tolist()}")


SANITY_TARGET = labkit.Gaussian(torch.tensor([1.0, -1.0, 0.5]),
                                torch.tensor([[2.0, 0.4, 0.0], [0.4, 0.3, 0.1], [0.0, 0.1, 1.0]]))


@pytest.mark.parametrize("name, opts", CASES)
def test_gaussian_target_sanity(name, opts):
    _check_sanity(name, opts, SANITY_TARGET, labkit.grids.karras(16, 0.002, 80.0), seed=0)


@given(case=st.sampled_from([c.values for c in CASES]),
       target=gaussians(dim=st.integers(2, 3), covariance=("full", "diagonal", "isotropic")),
       n_steps=st.integers(16, 32), sigma_min=st.floats(2e-3, 0.05), sigma_max=st.floats(10, 80),
       rho=st.floats(3.0, 7.0), seed=SEEDS)
def test_gaussian_target_sanity_random(case, target, n_steps, sigma_min, sigma_max, rho, seed):
    _check_sanity(*case, target, labkit.grids.karras(n_steps, sigma_min, sigma_max, rho), seed)


class _Identity(Solver):
    """A broken solver for the negative control: never moves."""
    name, order = "identity", 1.0

    def step(self, denoiser, x, i, sigmas, generator):
        denoiser(x, sigmas[i])
        return x


class _WrongSign(Solver):
    """A broken solver for the negative control: Euler with the drift's sign flipped."""
    name, order = "wrong_sign", 1.0

    def step(self, denoiser, x, i, sigmas, generator):
        s, s_next = sigmas[i], sigmas[i + 1]
        return x - (s_next - s) * (x - denoiser(x, s)) / s


@pytest.mark.parametrize("broken", [_Identity, _WrongSign])
def test_gaussian_sanity_catches_broken_solvers(broken):
    target = labkit.Gaussian(torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    sigmas = labkit.grids.karras(10, 0.01, 20.0)
    x = 20.0 * torch.randn(4, 2, generator=_gen(0), dtype=torch.float64)
    out, _ = sample(target, x, sigmas, solver=broken())
    dist = (out - target.mean).norm(dim=1)
    assert bool((dist > _sanity_bound(target, x, 20.0)).any())
    good, _ = sample(target, x, sigmas, solver="euler")
    assert bool(((good - target.mean).norm(dim=1) <= _sanity_bound(target, x, 20.0)).all())

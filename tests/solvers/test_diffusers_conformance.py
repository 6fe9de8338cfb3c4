"""labkit's solvers reproduce diffusers' schedulers (``diffusers_reference.json``).

The fixture, written by ``make_diffusers_reference.py`` (see its docstring for the conversion
between diffusers' ``(x_t, t)`` and labkit's ``(x, sigma)``), holds for each pair the sigma
grid the scheduler integrated over, the initial state, the output and the model-call count, in
two precisions: ``float64`` (diffusers' algorithm with every float32 cast turned into float64)
and ``native`` (diffusers as shipped, float32 sample). labkit runs on the recorded grid from the
recorded start, with its noise from ``torch.Generator().manual_seed(noise_seed)`` for the
stochastic pairs.

Every pair's labkit solver must be registered in ``labkit.solvers.SOLVERS``. The live test recomputes the fixture with diffusers and runs only where
``import diffusers`` works; CI runs the fixture tests.
"""

import pytest
import torch

import make_diffusers_reference as ref  # sibling script; pytest puts tests/solvers on sys.path
import make_kdiffusion_reference as kd
from labkit.solvers import SOLVERS, sample
from labkit.solvers.lms import LMS

FIXTURE = ref.load_fixture()
PAIRS = {p.key: p for p in ref.PAIRS}
# float64: both sides evaluate the same float64 formulas in a different association order
# (sigma_next / sigma vs exp(-lambda) ratios, phi functions vs expm1 / h, quadrature vs
# closed-form weights): a few ulp per operation over <= 19 calls of a denoiser whose Lipschitz
# constant on these grids is O(10); measured <= 9e-16 for every pair but DEIS (2.5e-15).
RTOL64 = ATOL64 = 1e-12
# native: diffusers keeps the sample (and its tables) in float32, eps_32 = 1.2e-7, states of
# size <= 30 over 10-19 steps: a worst-case accumulation eps_32 * 30 * 10 = 3.6e-5, typical
# (random-walk) round-off ~ eps_32 * 30 * sqrt(10) = 1.1e-5 / sqrt(#ops); measured <= 6e-7 for
# every pair but DEIS (2.1e-6). 5e-6 sits between the measured and the typical bound.
ATOL_NATIVE = 5e-6
# A documented algorithmic gap is reproduced to this (float64 round-off, as above).
GAP_TOL = 1e-10


def _solver(pair):
    assert pair.solver in SOLVERS, f"labkit solver {pair.solver!r} is not registered"
    return SOLVERS[pair.solver](**pair.options)


def _run(pair, record):
    gen = torch.Generator().manual_seed(FIXTURE["noise_seed"]) if pair.stochastic else None
    out, info = sample(kd.mixture_denoiser, torch.tensor(record["x_init"], dtype=torch.float64),
                       torch.tensor(record["grid"], dtype=torch.float64), solver=_solver(pair),
                       generator=gen, **pair.sample_kwargs)
    return out, info.nfe


def test_fixture_is_the_scripts():
    """The fixture was written from the pairs, seeds and denoiser the script defines now."""
    assert set(FIXTURE["pairs"]) == set(PAIRS)
    assert (FIXTURE["x_seed"], FIXTURE["noise_seed"], FIXTURE["steps"]) == \
        (ref.X_SEED, ref.NOISE_SEED, ref.STEPS)
    assert FIXTURE["denoiser"] == {"means": kd.MEANS, "variances": kd.VARIANCES,
                                   "weights": kd.WEIGHTS}
    for key, pair in PAIRS.items():
        entry = FIXTURE["pairs"][key]
        assert (entry["solver"], entry["options"], entry["scheduler"], entry["config"],
                entry["expect"]) == (pair.solver, pair.options, pair.scheduler, pair.config,
                                     pair.expect)
        grid = entry["float64"]["grid"]
        assert all(a > b for a, b in zip(grid, grid[1:])) and grid[-1] >= 0
        # The start is the seeded z times init_noise_sigma, divided by alpha_0 (VP state).
        x0 = torch.tensor(entry["float64"]["x_init"], dtype=torch.float64)
        z = ref.initial_noise()
        scale = (x0 / z)[0, 0]
        torch.testing.assert_close(x0, z * scale, rtol=1e-14, atol=0)


@pytest.mark.parametrize("key", sorted(PAIRS))
def test_matches_diffusers_float64(key):
    pair, entry = PAIRS[key], FIXTURE["pairs"][key]
    out, nfe = _run(pair, entry["float64"])
    expected = torch.tensor(entry["float64"]["x"], dtype=torch.float64)
    if pair.expect == "gap":
        # A documented difference (see the pair's note): labkit must reproduce the recorded
        # gap, which must be far above round-off.
        gap = float((out - expected).abs().max())
        assert gap > 1e-3
        assert abs(gap - entry["max_abs_diff_labkit_vs_float64"]) <= GAP_TOL
    else:
        torch.testing.assert_close(out, expected, rtol=RTOL64, atol=ATOL64)
    assert nfe == entry["float64"]["nfe"]


@pytest.mark.parametrize("key", sorted(k for k, p in PAIRS.items() if p.expect == "match"))
def test_matches_diffusers_native_float32(key):
    pair, entry = PAIRS[key], FIXTURE["pairs"][key]
    assert entry["native"]["sample_dtype"] == "float32"
    out, nfe = _run(pair, entry["native"])
    expected = torch.tensor(entry["native"]["x"], dtype=torch.float64)
    torch.testing.assert_close(out, expected, rtol=0, atol=ATOL_NATIVE)
    assert nfe == entry["native"]["nfe"]


def test_conformance_check_detects_planted_defects():
    """Negative controls: LMS of order 3 against diffusers' order-4 LMS, Euler on a grid off by
    1e-9 relative, and Euler ancestral with another noise seed all miss by far more than the
    tolerance."""
    cases = [(LMS(order=3), "lms", 1.0, None),
             (SOLVERS["euler"](), "euler", 1 + 1e-9, None),
             (SOLVERS["euler_ancestral"](), "euler_ancestral", 1.0, 1)]
    for solver, key, factor, seed in cases:
        record = FIXTURE["pairs"][key]["float64"]
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        out, _ = sample(kd.mixture_denoiser, torch.tensor(record["x_init"], dtype=torch.float64),
                        torch.tensor(record["grid"], dtype=torch.float64) * factor,
                        solver=solver, generator=gen)
        with pytest.raises(AssertionError):
            torch.testing.assert_close(out, torch.tensor(record["x"], dtype=torch.float64),
                                       rtol=RTOL64, atol=ATOL64)


def test_live_against_diffusers():
    """Recompute every pair with the installed diffusers (float64 run) and compare with labkit;
    where the installed version is the fixture's, the fixture must be reproduced too."""
    diffusers = pytest.importorskip("diffusers")
    same_version = diffusers.__version__ == FIXTURE["diffusers_version"]
    for key, pair in PAIRS.items():
        if pair.solver not in SOLVERS:
            continue
        live = ref.run_diffusers(pair, float64=True)
        if same_version:
            assert live["grid"] == FIXTURE["pairs"][key]["float64"]["grid"], key
            torch.testing.assert_close(
                torch.tensor(live["x"]), torch.tensor(FIXTURE["pairs"][key]["float64"]["x"]),
                rtol=0, atol=1e-14)
        if pair.expect == "match":
            out, nfe = _run(pair, live)
            torch.testing.assert_close(out, torch.tensor(live["x"], dtype=torch.float64),
                                       rtol=RTOL64, atol=ATOL64)
            assert nfe == live["nfe"], key

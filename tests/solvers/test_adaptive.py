"""Adaptive DPM-Solver-12/23 (``DPMAdaptive``): k-diffusion conformance, tolerance proportionality.

Conformance: ``kdiffusion_adaptive_reference.json`` holds k-diffusion 0.1.1.post1's
``sample_dpm_adaptive`` outputs, NFE and ``info`` (written by
``make_kdiffusion_adaptive_reference.py``); the live test recomputes them when
``KDIFFUSION_SAMPLING`` points at k-diffusion's ``sampling.py`` (as
``test_kdiffusion_conformance.py``).

Tolerance proportionality: with ``atol = rtol`` the global error against the exact Gaussian flow
map and the DOP853 mixture reference (as in ``test_ode_multistep.py``: sigma 2 -> 0.05, no
final 0) stays below ``C rtol`` and its log-log slope against ``rtol`` is near 1, while the
number of denoiser calls grows as ``rtol`` shrinks.
"""


import numpy as np
import pytest
import torch

import make_kdiffusion_adaptive_reference as aref  # sibling scripts, on sys.path via pytest
import make_kdiffusion_reference as ref
from labkit import grids
from labkit.solvers import sample
from labkit.solvers.adaptive import DPMAdaptive
from labkit.solvers.reference import gaussian_flow_map
from test_ode_multistep import _A, GAUSSIAN, MEAN, MIXTURE, SIGMA_MAX, SIGMA_MIN, _dop853

FIXTURE = aref.load_fixture()
# Same float64 formulas in the same association order as k-diffusion (measured difference:
# 0.0 on every case); 1e-12 leaves room for a different BLAS reduction order in the norm.
RTOL = ATOL = 1e-12
RTOLS = [1e-3, 1e-4, 1e-5, 1e-6]


def _grid():
    return torch.tensor([FIXTURE["sigma_max"], FIXTURE["sigma_min"]], dtype=torch.float64)


def _x():
    return torch.tensor(FIXTURE["x"], dtype=torch.float64)


def test_fixture_inputs_are_the_scripts():
    assert FIXTURE["x_seed"] == ref.X_SEED
    torch.testing.assert_close(ref.inputs()["x"], _x(), rtol=0, atol=0)
    assert FIXTURE["cases"] == aref.CASES
    assert (FIXTURE["sigma_min"], FIXTURE["sigma_max"]) == (aref.SIGMA_MIN, aref.SIGMA_MAX)


@pytest.mark.parametrize("key", sorted(aref.CASES))
def test_matches_kdiffusion_fixture(key):
    solver = DPMAdaptive(**aref.CASES[key])
    out, info = sample(ref.mixture_denoiser, _x(), _grid(), solver=solver)
    expected = FIXTURE["outputs"][key]
    torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                               rtol=RTOL, atol=ATOL)
    assert info.nfe == expected["nfe"]
    assert solver.stats == expected["info"]


def test_conformance_check_detects_planted_defects():
    """Negative controls: advancing with the embedded low-order solution (same error
    estimates), or a 1e-3 relative change of rtol, misses the fixture by far more than the
    tolerance."""

    class ReturnsLow(DPMAdaptive):
        def _trial(self, denoiser, x, s, t):
            low, high = super()._trial(denoiser, x, s, t)
            return high, low

    options = aref.CASES["order3_tight"]
    expected = torch.tensor(FIXTURE["outputs"]["order3_tight"]["x"], dtype=torch.float64)
    for solver in (ReturnsLow(**options), DPMAdaptive(**{**options, "rtol": 1e-4 * (1 + 1e-3)})):
        out, _ = sample(ref.mixture_denoiser, _x(), _grid(), solver=solver)
        with pytest.raises(AssertionError):
            torch.testing.assert_close(out, expected, rtol=RTOL, atol=ATOL)


def test_live_against_kdiffusion():
    live = aref.run_reference(ref.live_sampling(), _x())
    for key, expected in live.items():
        solver = DPMAdaptive(**aref.CASES[key])
        out, info = sample(ref.mixture_denoiser, _x(), _grid(), solver=solver)
        torch.testing.assert_close(out, torch.tensor(expected["x"], dtype=torch.float64),
                                   rtol=RTOL, atol=ATOL)
        assert (info.nfe, solver.stats) == (expected["nfe"], expected["info"]), key


@pytest.fixture(scope="module")
def problems():
    gen = torch.Generator().manual_seed(0)
    xg = SIGMA_MAX * torch.randn(32, 3, generator=gen, dtype=torch.float64)
    xm = SIGMA_MAX * torch.randn(16, 2, generator=gen, dtype=torch.float64)
    return {"gaussian": (GAUSSIAN, xg, gaussian_flow_map(MEAN, _A @ _A.T, xg, SIGMA_MAX,
                                                          SIGMA_MIN)),
            "mixture": (MIXTURE, xm, _dop853(xm, 1e-13))}


def _errors_and_nfe(problem, order, sigmas=None):
    denoiser, x0, exact = problem
    sigmas = torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=torch.float64) if sigmas is None else sigmas
    errors, nfes = [], []
    for rtol in RTOLS:
        out, info = sample(denoiser, x0, sigmas, solver=DPMAdaptive(order=order, rtol=rtol,
                                                                    atol=rtol))
        errors.append(float((out - exact).abs().max()))
        nfes.append(info.nfe)
    return np.array(errors), np.array(nfes)


@pytest.mark.parametrize("problem", ["gaussian", "mixture"])
@pytest.mark.parametrize("order", [2, 3])
def test_tolerance_proportionality(order, problem, problems):
    """Measured (max abs error / rtol, rtol = 1e-3..1e-6): order 2: 1.8-2.6 (Gaussian),
    1.3-1.7 (mixture); order 3: 0.05-0.27, 0.42-0.47; slopes of log error vs log rtol 0.95,
    0.96, 0.74, 1.01. Bounds: error < 5 rtol (twice the largest ratio), slope in [0.6, 1.3]
    (an error that ignored rtol has slope 0; one set by a fixed grid, too), NFE strictly
    increasing and the error strictly decreasing."""
    errors, nfes = _errors_and_nfe(problems[problem], order)
    assert (errors < 5 * np.array(RTOLS)).all(), errors / np.array(RTOLS)
    slope = np.polyfit(np.log(RTOLS), np.log(errors), 1)[0]
    assert 0.6 <= slope <= 1.3, slope
    assert (np.diff(nfes) > 0).all(), nfes
    assert (np.diff(errors) < 0).all(), errors


def test_multi_interval_grid_keeps_the_tolerance(problems):
    """A Karras grid of 5 intervals: each integrated adaptively, same error bound as one."""
    sigmas = grids.karras(6, SIGMA_MIN, SIGMA_MAX)[:-1]
    errors, nfes = _errors_and_nfe(problems["mixture"], 3, sigmas)
    assert (errors < 5 * np.array(RTOLS)).all(), errors / np.array(RTOLS)
    assert (np.diff(nfes) > 0).all()


def test_planted_fixed_step_controller_is_caught(problems):
    """Negative control: accept_safety = 0 with a near-zero integral gain never shrinks the
    step, so the error no longer follows rtol (slope far below 0.6)."""
    denoiser, x0, exact = problems["mixture"]
    sigmas = torch.tensor([SIGMA_MAX, SIGMA_MIN], dtype=torch.float64)
    errors = []
    for rtol in RTOLS:
        solver = DPMAdaptive(rtol=rtol, atol=rtol, icoeff=1e-6, accept_safety=0.0, h_init=0.2)
        out, _ = sample(denoiser, x0, sigmas, solver=solver)
        errors.append(float((out - exact).abs().max()))
    assert np.polyfit(np.log(RTOLS), np.log(errors), 1)[0] < 0.1


def test_final_step_to_zero_returns_the_denoiser_and_stats_reset():
    sigmas = torch.tensor([10.0, 0.5, 0.0], dtype=torch.float64)
    solver = DPMAdaptive()
    out, info = sample(ref.mixture_denoiser, _x(), sigmas, solver=solver)
    mid, _ = sample(ref.mixture_denoiser, _x(), sigmas[:2], solver=DPMAdaptive())
    s_in = torch.full((_x().shape[0],), 0.5, dtype=torch.float64)
    torch.testing.assert_close(out, ref.mixture_denoiser(mid, s_in), rtol=0, atol=0)
    assert info.nfe == solver.stats["nfe"] + 1
    first = dict(solver.stats)
    sample(ref.mixture_denoiser, _x(), sigmas, solver=solver)      # history restarts at i = 0
    assert solver.stats == first


def test_declarations_and_float32():
    assert DPMAdaptive.order is None and not DPMAdaptive.stochastic
    assert (DPMAdaptive().nfe_per_step, DPMAdaptive(order=2).nfe_per_step) == (3, 2)
    x = _x()
    out64, _ = sample(ref.mixture_denoiser, x, _grid(), solver=DPMAdaptive())
    out32, _ = sample(ref.mixture_denoiser, x.float(), _grid(), solver=DPMAdaptive())
    assert out32.dtype == torch.float32
    # ~7 trial steps with round-off 1e-7 relative on values of size ~10.
    torch.testing.assert_close(out32.double(), out64, rtol=0, atol=1e-4)


@pytest.mark.parametrize("options, err, match", [
    ({"order": 1}, ValueError, "order"), ({"order": 3.0}, TypeError, "order"),
    ({"order": True}, TypeError, "order"), ({"rtol": 0.0}, ValueError, "rtol"),
    ({"atol": -1e-3}, ValueError, "atol"), ({"rtol": float("nan")}, ValueError, "rtol"),
    ({"h_init": 0}, ValueError, "h_init"), ({"pcoeff": "0"}, TypeError, "pcoeff"),
    ({"icoeff": 0.0}, ValueError, "icoeff"), ({"accept_safety": 1.5}, ValueError,
                                              "accept_safety"),
    ({"dcoeff": float("inf")}, ValueError, "dcoeff"), ({"eta": 1.0}, TypeError, "unknown")])
def test_bad_options_raise(options, err, match):
    with pytest.raises(err, match=match):
        DPMAdaptive(**options)


def test_fine_grid_intervals_are_all_integrated():
    """Intervals shorter than k-diffusion's 1e-5 end slack in lambda_ (here 6.8e-6 each) are
    integrated, not skipped: the output follows the exact flow (error bound C * rtol as above,
    rtol = 1e-6), where skipping them would leave x unchanged (an error of 0.23 here)."""
    sigmas = torch.logspace(np.log10(3.0), np.log10(2.9), 5001, dtype=torch.float64)
    x0 = 3.0 * torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    exact = gaussian_flow_map(MEAN, _A @ _A.T, x0, 3.0, 2.9)
    out, info = sample(GAUSSIAN, x0, sigmas, solver=DPMAdaptive(rtol=1e-6, atol=1e-6))
    assert info.nfe >= 5000
    assert float((out - exact).abs().max()) < 5e-6
    assert float((x0 - exact).abs().max()) > 0.1   # skipping would be caught

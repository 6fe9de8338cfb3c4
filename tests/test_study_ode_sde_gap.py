"""The ode_sde_gap study runs end to end (quick config); its controls are flagged, its rigorous
bound holds, and its quadratures and interval helpers behave as the study assumes."""

import math

import numpy as np
import pytest
import torch

import labkit
from labkit.fokker_planck import GradientPerturbation, quadratic_potential
from _study_helpers import quick_run, strict_record, study_module

NAME = "ode_sde_gap"


@pytest.fixture(scope="module")
def run_and_out(tmp_path_factory):
    return quick_run(NAME, tmp_path_factory)


def test_record_is_complete_and_strict_json(run_and_out):
    _, out = run_and_out
    mod = study_module(NAME)
    cfg = mod.QUICK
    record = strict_record(out, NAME)
    assert record["study"] == NAME and record["quick"] is True
    assert (out / record["figures"][0]).stat().st_size > 10_000
    assert [c["claim"]["id"] for c in record["checks"]] == [c.id for c in mod.CLAIMS]
    t = record["tables"]
    n_fam = len(mod.families(mod.build_target(), cfg))
    assert len(t["wrong_scores"]) == 1 + 1 + n_fam * len(cfg.rms_errors) + 1
    assert len(t["refinement"]) == 1 + len(cfg.refinements)
    assert len(t["growth_refinement"]) == 1 + n_fam * len(cfg.rms_errors)
    assert len(t["training"]) == 1 + 4 * cfg.n_seeds  # lambda 0 / lambda / two placebos
    assert len(t["placebo_independent_runs"]) == 1 + 3


def test_quick_verdicts_and_controls(run_and_out):
    """Seed 0, quick (h = 0.2 and 0.1, sigma 3 -> 0.4): exact-gap order 1.86 (control s + 0.05:
    0.02); smallest growth factor per doubling 1.61 [1.49, 1.61] over h and h/2 (control:
    exactly 1); rho(R, gap) 0.885 [0.64, 0.98] (inconclusive with 14 scores; permuted control
    -0.48 [-0.86, -0.02]); other-distribution ratio
    0.049 (inconclusive in quick: sigma_max = 3 leaves L1(p_3, q_3) = 0.034; control 0.80).
    Claim 4 with 2 seeds cannot refute its placebo; it must at least not call it an effect."""
    run, _ = run_and_out
    checks = {c.claim.id: c for c in run.result.checks}
    assert checks["exact_gap_converges"].verdict == "supported"
    assert checks["gap_grows_with_perturbation"].verdict == "supported"
    for cid in ("exact_gap_converges", "gap_grows_with_perturbation", "gap_tracks_fp_residual",
                "consistent_wrong_score_no_gap"):
        assert checks[cid].control.verdict == "refuted", cid
    for cid in ("fp_training_shrinks_gap", "fp_training_improves_ode",
                "fp_training_degrades_sde"):
        assert checks[cid].control.verdict != "supported", cid
    # the effects are far from their regions' edges, not at them
    assert checks["exact_gap_converges"].control.measured.interval[1] < 0.5
    # claim 2a's interval covers the smallest factor on h and on h/2 (it is not degenerate)
    lo, hi = checks["gap_grows_with_perturbation"].measured.interval
    assert lo <= checks["gap_grows_with_perturbation"].measured.value <= hi and hi > lo
    assert checks["gap_grows_with_perturbation"].control.measured.interval == (1.0, 1.0)
    assert checks["gap_tracks_fp_residual"].measured.value > 0.7
    assert checks["gap_tracks_fp_residual"].control.measured.interval[1] < 0.3
    assert checks["consistent_wrong_score_no_gap"].control.measured.interval[0] > 0.5


def test_rigorous_bound_and_invisible_control(run_and_out):
    """gap_q <= L1(ODE_p, ODE_q) + floor_q + L1(SDE_q, SDE_p) (triangle inequality through q's
    own grid marginals, floor_q = their gap), and the grid ODE map does not expand L1 distances
    nor the grid SDE kernel (measured here, not assumed: the limiter makes the advection scheme
    nonlinear), so gap_q <= 2 L1(p_smax, q_smax) + floor_q. The invisible family's gaps equal
    the exact score's bit for bit (the samplers never evaluate sigma < sigma_min)."""
    run, _ = run_and_out
    t = run.result.tables
    start, after_ode, after_sde, floor_q, bound, _, gap_q = t["bound"][1]
    # non-expansion up to round-off of the L1 sums (1e-12 relative)
    assert after_ode <= start * (1 + 1e-12) and after_sde <= start * (1 + 1e-12)
    assert gap_q <= after_ode + floor_q + after_sde * (1 + 1e-12)
    assert gap_q <= bound and bound == pytest.approx(2 * start + floor_q)
    exact_gap = t["wrong_scores"][1][3]
    assert all(row[1] == exact_gap for row in t["invisible_control"][1:])
    # matched scales: every family's score error equals its target rms error squared
    for row in t["wrong_scores"][2:-1]:
        assert row[5] == pytest.approx(row[2] ** 2, rel=1e-9)


def test_residual_quadrature_matches_closed_form():
    """For a Gaussian N(m, v) and s' = s + c: r = 2 sigma c / (v + sigma^2) (constant in x), so
    R = (1/m) sum_j (2 sigma_j c / (v + sigma_j^2))^2 M_j with M_j the grid mass of p_sigma_j
    (midpoint rule); the exact score gives round-off. E = c^2 (1/m) sum_j M_j likewise."""
    mod = study_module(NAME)
    cfg = mod.QUICK
    p = labkit.Gaussian(torch.tensor([0.5], dtype=torch.float64),
                        torch.tensor([[0.6]], dtype=torch.float64))
    grid = mod.make_grid(cfg)
    c = 0.3
    wrong = GradientPerturbation(
        p, quadratic_potential([[0.0]], [1.0]), c)
    sig = mod.levels(cfg)
    mass = torch.stack([mod.density(p, grid, float(s)).sum() * mod.spacing(grid) for s in sig])
    # the grid holds p_sigma up to its tails beyond +-15 (4.8 sd at sigma = 3: 1.5e-6)
    assert float((mass - 1).abs().max()) < 1e-5
    expected = float(((2 * sig * c / (0.6 + sig ** 2)) ** 2 * mass).mean())
    # the same sum in another order and by autograd: round-off only (1e-12 relative)
    assert mod.residual_norm(wrong.score, p, grid, cfg) == pytest.approx(expected, rel=1e-12)
    assert mod.residual_norm(p.score, p, grid, cfg) < 1e-20
    assert mod.score_error_norm(wrong, p, grid, cfg) == pytest.approx(
        c ** 2 * float(mass.mean()), rel=1e-12)


def test_interval_helpers():
    """Orders from synthetic second- and first-order gaps (negative control); growth factor;
    ratio interval from the floor; Spearman bootstrap of a monotone relation is exactly 1."""
    mod = study_module(NAME)
    h = [0.2, 0.1, 0.05]
    m2 = mod.order_measurement(h, [4e-3, 1e-3, 2.5e-4])
    assert m2.value == pytest.approx(2.0) and m2.interval == pytest.approx((2.0, 2.0))
    m1 = mod.order_measurement(h, [4e-3, 2e-3, 1e-3])
    assert m1.value == pytest.approx(1.0)
    assert mod.growth_measurement({"a": [1.0, 2.0, 3.0]}).value == pytest.approx(1.5)
    g = mod.growth_measurement({"a": [1.0, 2.0, 3.0]}, {"a": [1.0, 2.0, 2.7]})
    assert g.value == pytest.approx(1.5) and g.interval == pytest.approx((1.35, 1.5))
    r = mod.ratio_measurement(0.01, 1.0, 0.002)
    assert r.interval == pytest.approx((0.008, 0.012))
    x = np.arange(10.0)
    rho = mod.rho_measurement(x, x ** 3, 200, "x")
    assert rho.value == pytest.approx(1.0) and rho.interval == pytest.approx((1.0, 1.0))
    assert math.isinf(mod.CLAIMS[0].region[1])

"""The NFE-frontier study runs end to end (quick config), follows the registry, and its ranking
checks can tell a better solver from a worse one (the wasteful controls are refuted)."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.solvers import SOLVERS, sample
from labkit.study import load_study, run_study, verdict

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _module():
    spec = importlib.util.spec_from_file_location("_nfe_frontier_under_test",
                                                  STUDIES / "nfe_frontier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module through sys.modules
    spec.loader.exec_module(module)
    return module


study = _module()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nfe_frontier")
    return run_study(load_study("nfe_frontier", STUDIES), quick=True, seed=0, out_dir=out), out


def _registered(name):
    return name in SOLVERS and not SOLVERS[name].stochastic


def test_record_is_complete_and_strict_json(quick_run):
    run, out = quick_run
    record = json.loads((out / "nfe_frontier.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record["study"] == "nfe_frontier" and record["quick"] is True
    assert [c["claim"]["id"] for c in record["checks"]] == [c.id for c in study.CLAIMS]
    assert (out / record["figures"][0]).stat().st_size > 10_000
    for name in ("rms_error", "actual_nfe", "w2", "claim_cells", "references", "left_out"):
        assert name in record["tables"]


def test_frontier_follows_the_registry(quick_run):
    """Every registered deterministic solver is on the frontier or in 'left_out' with a reason;
    every stochastic one is left out."""
    run, _ = quick_run
    on_frontier = {row[2] for row in run.result.tables["rms_error"][1:]}
    left_out = {row[0]: row[1] for row in run.result.tables["left_out"][1:]}
    assert on_frontier | set(left_out) == set(SOLVERS)
    assert not on_frontier & set(left_out)
    for name, cls in SOLVERS.items():
        if cls.stochastic:
            assert "stochastic" in left_out[name]
    assert {"euler", "heun", "ddim", "dpmpp_2m"} <= on_frontier


def test_actual_nfe_fits_each_budget(quick_run):
    """info.nfe never exceeds the budget, and Heun (2 NFE/step, Euler last step) uses 2N - 1."""
    run, _ = quick_run
    header, *rows = run.result.tables["actual_nfe"]
    budgets = [int(h.split("<=")[1]) for h in header[2:]]
    for row in rows:
        for b, used in zip(budgets, row[2:]):
            assert used is None or used <= b
    heun = [r for r in rows if r[1] == "heun" and r[0] == "karras"][0]
    assert list(heun[2:]) == [5, 9, 19]      # budgets 5, 10, 20: 3, 5, 10 steps
    euler = [r for r in rows if r[1] == "euler" and r[0] == "karras"][0]
    assert list(euler[2:]) == budgets


def test_every_measurable_control_is_refuted(quick_run):
    """The wasteful control (B with a discarded extra denoiser call per step) posing as A must be
    refuted, and it must be worse than B in every cell, not just in one."""
    run, _ = quick_run
    by_id = {c.claim.id: c for c in run.result.checks}
    for r in study.RANKINGS:
        if _registered(r.b[0]):
            assert by_id[r.claim.id].control.verdict == "refuted", r.claim.id
    cells = run.result.tables["claim_cells"][1:]
    assert cells
    for row in cells:
        assert row[8] > 1.0 and row[11] == "refuted", row


def test_unregistered_solvers_make_a_claim_inconclusive(quick_run):
    run, _ = quick_run
    by_id = {c.claim.id: c for c in run.result.checks}
    for r in study.RANKINGS:
        check = by_id[r.claim.id]
        if not (_registered(r.a[0]) and _registered(r.b[0])):
            assert check.verdict == "inconclusive"
            assert "not registered" in check.measured.method
            assert check.measured.interval == (0.0, math.inf)
        else:
            assert check.measured.n == study.QUICK.n_ref


def test_quick_findings_on_the_2d_mixture(quick_run):
    """Seed 0, quick (2-D mixture, budgets 10 and 20). Measured: Heun / Euler on the Karras grid
    2.70 [2.52, 2.92] (Heun's corrector evaluated at sigma_min = 0.002 overshoots at so few
    steps); DPM-Solver++(2M) / DDIM 0.49 [0.46, 0.54] on Karras, 0.20 [0.17, 0.23] on loglinear,
    2.82 [2.57, 3.07] on uniform_t(vp). Asserted with ample room: the verdicts only."""
    run, _ = quick_run
    by_id = {c.claim.id: c for c in run.result.checks}
    assert by_id["heun_beats_euler_karras"].verdict == "refuted"
    assert by_id["heun_beats_euler_karras"].measured.interval[0] > 1.5
    cells = {(r[0], r[2]): r for r in run.result.tables["claim_cells"][1:]}
    assert cells["dpmpp_2m_beats_ddim", "karras"][7] == "supported"
    assert cells["dpmpp_2m_beats_ddim", "loglinear"][7] == "supported"
    assert cells["dpmpp_2m_beats_ddim", "uniform_t_vp"][7] == "refuted"
    assert by_id["dpmpp_2m_beats_ddim"].verdict == "refuted"  # one cell out refutes "for all"


def test_combine_cells_is_the_every_cell_rule():
    inside = {f"c{i}": (0.5, 0.4, 0.6) for i in range(3)}
    m = study.combine_cells(inside, 10, "x", 0.99)
    assert verdict(study.REGION, m.interval) == "supported"
    m = study.combine_cells({**inside, "bad": (2.0, 1.5, 2.5)}, 10, "x", 0.99)
    assert verdict(study.REGION, m.interval) == "refuted" and "bad" in m.method
    m = study.combine_cells({**inside, "edge": (1.0, 0.8, 1.2)}, 10, "x", 0.99)
    assert verdict(study.REGION, m.interval) == "inconclusive"


def test_ratio_interval_is_paired_and_exact_on_a_constant_ratio():
    rng = np.random.default_rng(0)
    sq_b = rng.exponential(size=(2, 50))
    value, lo, hi = study.ratio_interval(4.0 * sq_b, sq_b, 0.95, 200, rng)
    assert value == pytest.approx(2.0) and lo == pytest.approx(2.0) and hi == pytest.approx(2.0)
    value, lo, hi = study.ratio_interval(sq_b[:, ::-1] * 1.0, sq_b, 0.95, 500, rng)
    assert lo < value < hi


def test_wasteful_control_spends_one_more_call_per_step():
    import labkit
    target = labkit.Gaussian(torch.zeros(2, dtype=torch.float64), torch.eye(2, dtype=torch.float64))
    x = 80.0 * torch.ones(3, 2, dtype=torch.float64)
    grid = study.make_grid("karras", 6)
    plain, info = sample(target, x, grid, solver=SOLVERS["euler"]())
    wasted, winfo = sample(target, x, grid, solver=study.Wasteful(SOLVERS["euler"]()))
    assert winfo.nfe == 2 * info.nfe and torch.equal(plain, wasted)
    assert study.budget_steps(lambda: study.Wasteful(SOLVERS["euler"]()), "karras", [10]) \
        == {10: (5, 10)}


@pytest.mark.parametrize("kind", study.GRIDS)
def test_grids_span_the_documented_range(kind):
    g = study.make_grid(kind, 8)
    assert g[0].item() == pytest.approx(study.SIGMA_MAX, rel=1e-9)
    assert g[-2].item() == pytest.approx(study.SIGMA_MIN, rel=1e-9)
    assert g[-1].item() == 0.0 and len(g) == 9

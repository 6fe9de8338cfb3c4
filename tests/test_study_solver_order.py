"""The solver-order study runs end to end (quick config); its controls are refuted."""

import json
from pathlib import Path

import pytest

from labkit.solvers import SOLVERS
from labkit.study import load_study, run_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("solver_order")
    return run_study(load_study("solver_order", STUDIES), quick=True, seed=0, out_dir=out), out


def test_record_is_complete_and_strict_json(quick_run):
    run, out = quick_run
    record = json.loads((out / "solver_order.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record["study"] == "solver_order" and record["quick"] is True
    assert (out / record["figures"][0]).stat().st_size > 10_000
    fitted = record["tables"]["fitted_orders"]
    assert fitted[0][:5] == ["solver", "published order", "declared order", "target",
                             "fitted order"]


def test_one_claim_per_registered_deterministic_solver(quick_run):
    """The claims follow the registry: every deterministic solver with an order, no other."""
    run, _ = quick_run
    expected = {f"{name}_order" for name, cls in SOLVERS.items()
                if not cls.stochastic and cls.order is not None}
    assert {c.claim.id for c in run.result.checks} == expected
    for check in run.result.checks:
        lo, hi = check.claim.region
        assert hi - lo == pytest.approx(0.6, abs=1e-12)


def test_every_control_is_refuted(quick_run):
    """A planted solver one order below the claim (Euler in disguise; for Euler itself, Euler at
    a wrong noise level) must be told apart by the same measurement."""
    run, _ = quick_run
    assert {c.claim.id: c.control.verdict for c in run.result.checks} == {
        c.claim.id: "refuted" for c in run.result.checks}


def test_second_order_and_euler_claims_supported(quick_run):
    """Seed 0, quick: fitted orders lie within 0.02 of the published ones (see the record), far
    inside the +-0.3 region."""
    run, _ = quick_run
    verdicts = {c.claim.id: c.verdict for c in run.result.checks}
    for name in ("euler", "heun", "dpm_2", "dpmpp_2m"):
        assert verdicts[f"{name}_order"] == "supported"


def test_lms_published_order_is_refuted(quick_run):
    """LMS(4) in k-diffusion's form converges at order ~2 (its warm-up caps it), not 4."""
    run, _ = quick_run
    check = {c.claim.id: c for c in run.result.checks}["lms_order"]
    assert check.claim.region == (3.7, 4.3)
    assert check.verdict == "refuted" and check.measured.interval[1] < 2.5


def test_references_are_far_below_the_errors(quick_run):
    """The DOP853 reference's estimated error is < 1e-10 (measured 7.9e-13), over four orders
    of magnitude below the smallest solver error in the quick run (1.5e-8, dpm_solver at 256
    steps), so it cannot bend the slopes."""
    run, _ = quick_run
    refs = {row[0]: row[2] for row in run.result.tables["references"][1:]}
    assert 0 < refs["mixture_2d"] < 1e-10 and refs["low_rank_gaussian_3d"] == 0.0
    errors = [e for row in run.result.tables["errors"][1:] for e in row[2:]]
    assert min(errors) > 1e4 * refs["mixture_2d"]

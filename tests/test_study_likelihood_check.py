"""The likelihood_check study runs end to end (quick config); its controls are refuted."""

import json
from pathlib import Path

import pytest

from labkit.study import load_study, run_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("likelihood_check")
    return run_study(load_study("likelihood_check", STUDIES), quick=True, seed=0,
                     out_dir=out), out


def test_record_is_complete_and_strict_json(quick_run):
    run, out = quick_run
    record = json.loads((out / "likelihood_check.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record["study"] == "likelihood_check" and record["quick"] is True
    assert (out / record["figures"][0]).stat().st_size > 10_000
    assert record["tables"]["likelihood"][0][:3] == ["target", "d", "points"]
    assert [row[0] for row in record["tables"]["likelihood"][1:]] == ["mixture_2d",
                                                                       "gaussian_8d"]


def test_quick_verdicts_are_supported(quick_run):
    """Seed 0, quick: worst likelihood error 3.9e-5 nats (claimed <= 1e-3), relative bias
    +0.0023 [-0.0004, +0.0049] (claimed within +-0.02), variance ratio 0.999 [0.982, 1.015]
    on the 8-D Gaussian only."""
    run, _ = quick_run
    assert {c.claim.id: c.verdict for c in run.result.checks} == {
        "pf_ode_exact_likelihood": "supported", "hutchinson_unbiased": "supported",
        "hutchinson_variance": "supported"}
    exact = run.result.checks[0]
    assert exact.measured.interval[1] < 1e-3 / 5  # far inside, not at the edge


def test_variance_claim_excludes_the_two_dimensional_identity(quick_run):
    """In d = 2 a Rademacher estimate misses tr J by exactly +-(J_12 + J_21), so mixture_2d's
    variance ratio is 1 to round-off (a sanity identity, 1e-12 allows float64 sums of 3e4
    terms); the claim's measurement must use only the 8-D Gaussian's draws (2^15 // 3 * 3)."""
    run, _ = quick_run
    rows = {(r[0], r[1]): r[4] for r in run.result.tables["estimator"][1:]}
    assert rows[("mixture_2d", "rademacher")] == pytest.approx(1.0, abs=1e-12)
    assert rows[("gaussian_8d", "rademacher")] != pytest.approx(1.0, abs=1e-6)  # a real test
    variance = run.result.checks[2]
    assert variance.measured.n == (1 << 15) // 3 * 3
    assert variance.measured.value == rows[("gaussian_8d", "rademacher")]


def test_every_control_is_refuted(quick_run):
    """Perturbed denoisers miss by ~4 nats; probes scaled by 1.1 show bias 0.21 (= 1.1^2 - 1);
    Gaussian probes against the Rademacher formula give a variance ratio 6.74 on the 8-D
    Gaussian."""
    run, _ = quick_run
    controls = {c.claim.id: c.control for c in run.result.checks}
    assert {k: c.verdict for k, c in controls.items()} == {k: "refuted" for k in controls}
    assert controls["hutchinson_unbiased"].measured.value == pytest.approx(0.21, abs=0.01)
    assert controls["pf_ode_exact_likelihood"].measured.interval[0] > 100 * 1e-3

"""The tropical_boundary study runs end to end (quick config); its controls are refuted and its
exact measurements (counts, distances to the boundary) are exact."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from labkit.study import load_study, run_study

STUDIES = Path(__file__).resolve().parents[1] / "studies"


def _module():
    """The study module itself (its dataclasses need it registered in sys.modules)."""
    name = "tropical_boundary_for_test"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, STUDIES / "tropical_boundary.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tropical_boundary")
    return run_study(load_study("tropical_boundary", STUDIES), quick=True, seed=0,
                     out_dir=out), out


def _table(run, name):
    rows = run.result.tables[name]
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def test_record_is_complete_and_strict_json(quick_run):
    run, out = quick_run
    record = json.loads((out / "tropical_boundary.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert record["study"] == "tropical_boundary" and record["quick"] is True
    assert (out / record["figures"][0]).stat().st_size > 10_000
    assert [c["claim"]["id"] for c in record["checks"]] == [
        "independent_of_linear_regions", "independent_of_weight_norm",
        "negative_with_robustness", "adversarial_reduces_pieces", "noise_reduces_pieces"]
    quick = _module().QUICK
    models = _table(run, "models")
    # one row per (dataset, seed, mode incl. the label-noise control)
    assert len(models) == len(quick.datasets) * quick.n_seeds * 4
    trajectories = _table(run, "trajectories")
    assert len(trajectories) == len(quick.datasets) * quick.n_seeds * (3 * len(quick.checkpoints)
                                                                         + 1)


def test_claim_regions_are_the_fixed_ones(quick_run):
    """Regions fixed before any run: |rho| <= 0.5, rho <= -0.3, log-ratio <= 0."""
    run, _ = quick_run
    regions = {c.claim.id: c.claim.region for c in run.result.checks}
    assert regions == {"independent_of_linear_regions": (-0.5, 0.5),
                       "independent_of_weight_norm": (-0.5, 0.5),
                       "negative_with_robustness": (-1.0, -0.3),
                       "adversarial_reduces_pieces": (-math.inf, 0.0),
                       "noise_reduces_pieces": (-math.inf, 0.0)}


def test_every_control_is_refuted(quick_run):
    """Seed 0, quick: the dependent-by-construction controls give rho 0.91 [0.80, 0.99] and
    0.99 [0.97, 1.0] (outside [-0.5, 0.5]); the shuffled pairing gives -0.01 [-0.05, 0.03]
    (above -0.3); label-noise training raises the piece count (log-ratio 0.70 [0.62, 0.77])."""
    run, _ = quick_run
    assert {c.claim.id: c.control.verdict for c in run.result.checks} == {
        c.claim.id: "refuted" for c in run.result.checks}
    shuffled = run.result.checks[2].control.measured
    assert abs(shuffled.value) < 0.1 and shuffled.interval[1] - shuffled.interval[0] < 0.3


def test_lp_and_tropical_counts_agree_on_a_trained_net(quick_run):
    """Exactness cross-check: two independent exact methods, same counts."""
    run, _ = quick_run
    rows = {r["method"]: r for r in _table(run, "exactness")}
    assert set(rows) == {"lp", "tropical"}
    for key in ("boundary pieces", "linear regions (boundary count)",
                "linear regions (region count)"):
        assert rows["lp"][key] == rows["tropical"][key], key
    assert rows["lp"]["boundary pieces"] > 0


def test_nearest_boundary_points_lie_on_the_boundary(quick_run):
    """Every robustness distance is attained at a point where |f| vanishes to round-off
    (1e-9: f is O(10) on the box and the segments are computed in float64)."""
    run, _ = quick_run
    models = _table(run, "models")
    assert max(r["max |f| at nearest boundary point"] for r in models) < 1e-9
    assert min(r["certified fraction"] for r in models) > 0.5
    assert all(0 < r["robustness"] < 5 for r in models)


def _line_net(offset: float):
    """f(x) = relu(x1) - relu(-x1) + relu(x2) - relu(-x2) - offset = x1 + x2 - offset."""
    w1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=torch.float64)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    net = net.double()
    with torch.no_grad():
        net[0].weight.copy_(w1)
        net[0].bias.zero_()
        net[2].weight.copy_(torch.tensor([[1.0, -1.0, 1.0, -1.0]], dtype=torch.float64))
        net[2].bias.fill_(-offset)
    return net


def test_exact_distance_on_a_straight_boundary():
    """f = x1 + x2 - 0.5: the boundary is one line crossing 3 activation regions (quadrants
    minus one it misses); the distance is |x1 + x2 - 0.5| / sqrt(2) exactly. Negative control:
    the same points against the boundary of offset 0.6 are off by 0.1 / sqrt(2)."""
    tb = _module()
    x = torch.rand(50, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5
    expected = (x[:, 0] + x[:, 1] - 0.5).abs().numpy() / math.sqrt(2)
    dist, nearest = tb.distances_to_segments(x.numpy(), tb.boundary_segments(_line_net(0.5), 2.0))
    np.testing.assert_allclose(dist, expected, rtol=0, atol=1e-12)  # float64 round-off
    np.testing.assert_allclose(nearest.sum(1), 0.5, rtol=0, atol=1e-12)
    wrong, _ = tb.distances_to_segments(x.numpy(), tb.boundary_segments(_line_net(0.6), 2.0))
    assert np.abs(wrong - expected).max() > 0.05


def test_spearman_matches_scipy_and_handles_constants():
    from scipy.stats import spearmanr
    tb = _module()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, (20, 7)), rng.normal(size=(20, 7))
    ours = tb.spearman_rows(a, b)
    ref = [spearmanr(x, y).statistic for x, y in zip(a, b)]
    np.testing.assert_allclose(ours, ref, rtol=1e-12, equal_nan=True)
    assert np.isnan(tb.spearman_rows(np.ones(5), np.arange(5.0)))

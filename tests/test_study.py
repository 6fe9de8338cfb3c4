"""Tests of labkit.study: the verdict rule, records, intervals, the protocol and the runner."""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit.study import (Check, Claim, Control, Measurement, Result, StudyProtocolError,
                          UnknownStudyError, bootstrap_interval, discover_studies, load_record,
                          load_study, mc_mean, normal_interval, regression_slope_interval,
                          resolve_studies_dir, run_study, save_figure, verdict, write_record)
from labkit.study._files import atomic_write_text

INF = math.inf

EXAMPLE_STUDY = '''\
"""Toy study written by labkit's tests (not a real claim).

Claim: the mean of N(TRUE_MEAN, 0.1^2) draws lies in REGION. The truth is planted, so the
verdict is known in advance; the control draws around CONTROL_MEAN.
"""
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from labkit.study import Check, Claim, Result, mc_mean, save_figure

TITLE = {title!r}
CLAIMS = (Claim("mean_is_one", "labkit tests", "The mean is one.\\nSecond line.", "sample mean",
                {region!r}),)
RESULT_REGION = {result_region!r}


@dataclass(frozen=True)
class Config:
    seed: int = 0
    n: int = 200


QUICK = Config()
FULL = Config(n=2000)


def run(config, out_dir):
    rng = np.random.default_rng(config.seed)
    measured = mc_mean(rng.normal({true_mean!r}, 0.1, config.n))
    control = mc_mean(rng.normal({control_mean!r}, 0.1, config.n))
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    figure = save_figure(fig, out_dir, Path(__file__).stem)
    if {crash!r}:
        raise RuntimeError("planted crash midway through the study")
    claim = CLAIMS[0] if RESULT_REGION is None else replace(CLAIMS[0], region=RESULT_REGION)
    check = Check.evaluate(claim, measured, "draws centred elsewhere", control)
    fields = dict(study=Path(__file__).stem, title=TITLE, checks=[check],
                  tables={{"draws": [["seed", "n"], [config.seed, config.n]]}},
                  figures=[figure], config=config)
    return Result(**{{**fields, **{overrides!r}}})
'''


def write_example_study(directory: Path, name: str = "toy", *, true_mean: float = 1.0,
                        control_mean: float = 3.0, region=(0.9, 1.1), crash: bool = False,
                        title: str = "Toy mean study", overrides: dict | None = None,
                        result_region=None) -> Path:
    """Write the toy study as ``directory/NAME.py`` (used by test_cli.py too).

    ``overrides`` replaces fields of the returned Result; ``result_region`` makes ``run`` report
    the claim with another region than the declared ``CLAIMS`` (both plant protocol violations).
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(EXAMPLE_STUDY.format(title=title, region=region, true_mean=true_mean,
                                         control_mean=control_mean, crash=crash,
                                         overrides=overrides or {}, result_region=result_region))
    return path


def reject_constant(token):
    raise AssertionError(f"non-standard JSON constant {token} in a record")


def claim(region=(1.8, 2.2), id="order"):
    return Claim(id, "Karras et al. 2022, arXiv:2206.00364", "Heun is second order.",
                 "log-log slope", region)


def measurement(lo, hi, value=None):
    return Measurement((lo + hi) / 2 if value is None else value, (lo, hi), 10, "test")


# ---------------------------------------------------------------- verdict rule

@pytest.mark.parametrize("region, interval, expected", [
    ((1.8, 2.2), (1.9, 2.1), "supported"),
    ((1.8, 2.2), (1.8, 2.2), "supported"),        # closed ends: equal ends are inside
    ((1.8, 2.2), (2.3, 2.5), "refuted"),
    ((1.8, 2.2), (0.9, 1.1), "refuted"),
    ((1.8, 2.2), (2.2, 2.5), "inconclusive"),     # touches the region at one point
    ((1.8, 2.2), (1.0, 1.8), "inconclusive"),
    ((1.8, 2.2), (1.7, 2.0), "inconclusive"),     # straddles an end
    ((1.8, 2.2), (1.0, 3.0), "inconclusive"),     # wider than the region
    ((-INF, 0.0), (-3.0, -0.1), "supported"),      # one-sided "negative"
    ((-INF, 0.0), (0.1, 0.5), "refuted"),
    ((-INF, 0.0), (-0.1, 0.1), "inconclusive"),
    ((0.0, INF), (-INF, -1.0), "refuted"),
    ((0.0, INF), (1.0, INF), "supported"),
    ((-INF, INF), (-INF, INF), "supported"),
    ((2.0, 2.0), (2.0, 2.0), "supported"),         # a point claim met exactly
    ((2.0, 2.0), (1.9, 2.1), "inconclusive"),
])
def test_verdict_cases(region, interval, expected):
    assert verdict(region, interval) == expected


@given(st.lists(st.floats(-1e6, 1e6), min_size=4, max_size=4))
def test_verdict_matches_set_relations(ends):
    lo, hi, m_lo, m_hi = sorted(ends[:2]) + sorted(ends[2:])
    got = verdict((lo, hi), (m_lo, m_hi))
    inside = lo <= m_lo and m_hi <= hi
    disjoint = m_hi < lo or m_lo > hi
    assert got == ("supported" if inside else "refuted" if disjoint else "inconclusive")
    # Widening the region can only move a verdict towards "supported".
    rank = {"refuted": 0, "inconclusive": 1, "supported": 2}
    assert rank[verdict((lo - 1, hi + 1), (m_lo, m_hi))] >= rank[got]


@pytest.mark.parametrize("region, error", [
    ((2.0, 1.0), ValueError), ((math.nan, 1.0), ValueError), ((1.0,), TypeError),
    ("ab", TypeError), ((True, 2.0), TypeError), ((None, 1.0), TypeError)])
def test_verdict_rejects_malformed_regions(region, error):
    with pytest.raises(error, match="region"):
        verdict(region, (0.0, 1.0))


# ---------------------------------------------------------------- records

def test_claim_and_measurement_validate_their_fields():
    with pytest.raises(ValueError, match="Claim.region"):
        claim(region=(1.0, 0.0))
    with pytest.raises(TypeError, match="Claim.id"):
        Claim("", "s", "st", "q", (0, 1))
    with pytest.raises(ValueError, match="Measurement.n"):
        Measurement(1.0, (0.0, 2.0), 0, "m")
    with pytest.raises(ValueError, match="Measurement.value"):
        Measurement(math.nan, (0.0, 2.0), 3, "m")
    with pytest.raises(TypeError, match="Measurement.method"):
        Measurement(1.0, (0.0, 2.0), 3, "")


def test_check_computes_its_verdict_and_the_controls_against_the_same_region():
    check = Check.evaluate(claim(), measurement(1.95, 2.05), "Euler posing as order 2",
                           measurement(0.9, 1.1))
    assert check.verdict == "supported"
    assert check.control.verdict == "refuted"
    assert check.control_ok and check.note is None
    refuted = Check.evaluate(claim(), measurement(0.9, 1.1), "c", measurement(0.9, 1.1))
    assert refuted.verdict == "refuted"


def test_check_rejects_a_control_judged_against_another_region():
    lying = Control("Euler", measurement(1.9, 2.1), "refuted")  # really "supported"
    with pytest.raises(ValueError, match="Control.against"):
        Check(claim(), measurement(1.9, 2.1), lying)
    with pytest.raises(TypeError):
        Check(claim(), measurement(1.9, 2.1), Control("c", measurement(0, 1), "refuted"),
              verdict="supported")


def test_a_control_that_is_not_refuted_is_flagged_in_the_record():
    check = Check.evaluate(claim(), measurement(1.9, 2.1), "a control that cannot fail",
                           measurement(1.95, 2.05))
    assert check.control.verdict == "supported"
    assert not check.control_ok
    record = check.to_dict()
    assert record["control_ok"] is False
    assert "cannot tell" in record["note"]


def full_result(**changes) -> Result:
    one_sided = Claim("negative", "s", "The drift is negative.", "drift", (-INF, 0.0))
    checks = [Check.evaluate(claim(), measurement(1.9, 2.1), "Euler", measurement(0.9, 1.1)),
              Check.evaluate(one_sided, measurement(-1.0, -0.5), "flipped", measurement(0.2, INF))]
    fields = dict(study="toy", title="Toy", checks=checks,
                  tables={"rates": [["h", "error"], [0.1, 1e-3], [0.05, INF]]},
                  figures=["toy.png"], config={"grid": (1, 2), "sigma_max": INF}, seed=3,
                  quick=True)
    return Result(**{**fields, **changes})


def test_result_round_trips_through_strict_json_with_infinite_ends(tmp_path):
    result = full_result()
    text = result.to_json()
    data = json.loads(text, parse_constant=reject_constant)
    assert data["checks"][1]["claim"]["region"] == ["-inf", 0.0]
    assert data["checks"][1]["control"]["measured"]["interval"] == [0.2, "inf"]
    assert Result.from_dict(data) == result
    path = write_record(result, tmp_path / "toy.json")
    assert load_record(path) == result
    assert [p.name for p in tmp_path.iterdir()] == ["toy.json"]


def test_nan_in_tables_is_written_as_a_string_not_a_json_constant():
    text = full_result(tables={"t": [["x"], [math.nan], [np.float64(-INF)]]}).to_json()
    assert json.loads(text, parse_constant=reject_constant)["tables"]["t"] == [["x"], ["nan"],
                                                                                 ["-inf"]]


def test_records_with_a_tampered_verdict_or_no_checks_are_rejected(tmp_path):
    data = full_result().to_dict()
    data["checks"][0]["verdict"] = "refuted"
    with pytest.raises(ValueError, match="stores verdict"):
        Result.from_dict(data)
    with pytest.raises(ValueError, match="checks"):
        Result.from_dict({"study": "x", "title": "y"})
    (tmp_path / "inf.json").write_text('{"study": "x", "value": Infinity}')
    with pytest.raises(ValueError, match="Infinity"):
        load_record(tmp_path / "inf.json")


def test_result_validates_tables_and_figures():
    with pytest.raises(ValueError, match="row 1"):
        full_result(tables={"t": [["a", "b"], [1]]})
    with pytest.raises(ValueError, match="relative"):
        full_result(figures=["../elsewhere.png"])
    with pytest.raises(TypeError, match="Check"):
        full_result(checks=[])


# ---------------------------------------------------------------- intervals

def coverage(intervals, truth) -> float:
    lo, hi = np.array(intervals).T
    return float(np.mean((lo <= truth) & (truth <= hi)))


# With R replicates and true coverage 0.95 the observed coverage has standard deviation
# sqrt(0.95 * 0.05 / R); the tolerances below are about 4 of those (false failure < 1e-4).
def test_normal_interval_covers_the_mean_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    reps, n = 4000, 50
    means = rng.normal(2.0, 1.0, (reps, n)).mean(axis=1)
    stderr = 1.0 / math.sqrt(n)
    assert abs(coverage([normal_interval(m, stderr) for m in means], 2.0) - 0.95) < 0.015
    # Negative control: half the standard error must visibly under-cover (~68%).
    assert coverage([normal_interval(m, stderr / 2) for m in means], 2.0) < 0.75


def test_mc_mean_uses_student_t_and_covers_for_small_samples():
    rng = np.random.default_rng(2)
    samples = rng.normal(0.0, 3.0, (4000, 4))
    measured = [mc_mean(s) for s in samples]
    assert abs(coverage([m.interval for m in measured], 0.0) - 0.95) < 0.015
    assert measured[0].n == 4 and "Student-t" in measured[0].method
    # Negative control: the normal interval with the sample stderr under-covers at n = 4.
    z = [normal_interval(s.mean(), s.std(ddof=1) / 2) for s in samples]
    assert coverage(z, 0.0) < 0.90


def test_bootstrap_interval_coverage_and_determinism():
    rng = np.random.default_rng(3)
    reps = 600
    measured = [bootstrap_interval(rng.normal(1.0, 1.0, 40), n_boot=400, generator=i)
                for i in range(reps)]
    # The percentile bootstrap is known to under-cover slightly at n = 40 (about 0.93-0.94).
    assert 0.90 < coverage([m.interval for m in measured], 1.0) < 0.98
    values = rng.exponential(size=30)
    assert bootstrap_interval(values, generator=5) == bootstrap_interval(values, generator=5)
    median = bootstrap_interval(values, np.median, generator=5)
    assert median.value == pytest.approx(np.median(values))
    unvectorised = bootstrap_interval(values, lambda v: float(np.median(v)), generator=5)
    assert unvectorised.interval == median.interval


def test_regression_slope_interval_covers_and_is_exact_on_a_line():
    rng = np.random.default_rng(4)
    x = np.linspace(0.0, 1.0, 8)
    fits = [regression_slope_interval(x, 0.5 - 2.0 * x + rng.normal(0, 0.3, 8))
            for _ in range(3000)]
    assert abs(coverage([f.interval for f in fits], -2.0) - 0.95) < 0.017
    exact = regression_slope_interval(x, 3.0 * x + 1.0)
    assert exact.value == pytest.approx(3.0)
    assert exact.interval[1] - exact.interval[0] < 1e-9
    assert exact.n == 8 and "OLS" in exact.method


@pytest.mark.parametrize("call, error, match", [
    (lambda: normal_interval(0.0, -1.0), ValueError, "stderr"),
    (lambda: normal_interval(0.0, 1.0, level=1.5), ValueError, "level"),
    (lambda: mc_mean([1.0]), ValueError, "values"),
    (lambda: mc_mean([1.0, math.nan]), ValueError, "values"),
    (lambda: bootstrap_interval([1.0, 2.0], n_boot=1), ValueError, "n_boot"),
    (lambda: bootstrap_interval([1.0, 2.0], generator="x"), TypeError, "generator"),
    (lambda: regression_slope_interval([1, 1, 1], [1, 2, 3]), ValueError, "constant"),
    (lambda: regression_slope_interval([1, 2, 3, 4], [1, 2, 3]), ValueError, "same length"),
])
def test_interval_helpers_reject_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


# ---------------------------------------------------------------- protocol and discovery

def test_protocol_violations_are_listed_together(tmp_path):
    (tmp_path / "bad.py").write_text(textwrap.dedent('''\
        """A study missing most of the protocol."""
        from dataclasses import dataclass

        @dataclass
        class Config:
            n: int = 1
        '''))
    with pytest.raises(StudyProtocolError) as err:
        load_study("bad", tmp_path)
    for missing in ("TITLE", "frozen dataclass", "run(config, out_dir)"):
        assert missing in str(err.value)


def test_discovery_skips_private_files_and_benchmarks_and_keeps_broken_ones(tmp_path):
    write_example_study(tmp_path, "toy")
    write_example_study(tmp_path / "benchmarks", "bench")
    (tmp_path / "_helpers.py").write_text("raise RuntimeError('never imported')\n")
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    entries = {e.name: e for e in discover_studies(tmp_path)}
    assert sorted(entries) == ["broken", "toy"]
    assert entries["toy"].study.title == "Toy mean study"
    assert entries["broken"].study is None and "does_not_exist" in entries["broken"].error
    with pytest.raises(UnknownStudyError) as err:
        load_study("bench", tmp_path)
    assert err.value.known == ("broken", "toy")


def test_studies_directory_resolution_order(tmp_path, monkeypatch):
    explicit, env, cwd = tmp_path / "explicit", tmp_path / "env", tmp_path / "cwd"
    for d in (explicit, env, cwd / "studies"):
        d.mkdir(parents=True)
    monkeypatch.setenv("LABKIT_STUDIES", str(env))
    assert resolve_studies_dir(explicit, cwd=cwd) == explicit
    assert resolve_studies_dir(cwd=cwd) == env
    monkeypatch.delenv("LABKIT_STUDIES")
    assert resolve_studies_dir(cwd=cwd) == cwd / "studies"
    assert resolve_studies_dir(cwd=tmp_path).name == "studies"  # beside the labkit source
    with pytest.raises(ValueError, match="studies directory"):
        resolve_studies_dir(tmp_path / "missing")


# ---------------------------------------------------------------- runner

def test_run_study_writes_a_complete_record_and_its_figure(tmp_path):
    study = load_study("toy", write_example_study(tmp_path / "studies").parent)
    run = run_study(study, quick=True, seed=7, out_dir=tmp_path / "out")
    assert run.record == tmp_path / "out" / "toy.json"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["toy.json", "toy.png"]
    record = json.loads(run.record.read_text(), parse_constant=reject_constant)
    assert record["seed"] == 7 and record["quick"] is True
    assert record["config"] == {"seed": 7, "n": 200}
    assert record["tables"]["draws"][1] == [7, 200]
    assert record["checks"][0]["verdict"] == "supported"
    provenance = record["provenance"]
    assert provenance["git"] is None and provenance["device"] == "cpu"
    assert provenance["started"].endswith("+00:00") and provenance["wall_s"] >= 0
    assert set(provenance) >= {"labkit", "python", "torch", "numpy"}
    assert load_record(run.record) == run.result


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077], ids=oct)
def test_records_get_the_usual_permissions_not_mkstemps_private_ones(tmp_path, umask):
    # An ordinary open(path, "w") creates 0o666 & ~umask; mkstemp alone would give 0o600.
    previous = os.umask(umask)
    try:
        path = tmp_path / "report.md"
        atomic_write_text(path, "text")
        study = load_study("toy", write_example_study(tmp_path / "studies").parent)
        record = run_study(study, quick=True, out_dir=tmp_path / "out").record
    finally:
        os.umask(previous)
    for written in (path, record):
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~umask, written


def test_a_crashing_study_leaves_no_record_and_no_temporary_files(tmp_path):
    crashing = load_study("toy", write_example_study(tmp_path / "crash", crash=True).parent)
    with pytest.raises(RuntimeError, match="planted crash"):
        run_study(crashing, quick=True, out_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_crashing_rerun_keeps_the_earlier_record_untouched(tmp_path):
    good = load_study("toy", write_example_study(tmp_path / "good").parent)
    run_study(good, quick=True, out_dir=tmp_path / "out")
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    crashing = load_study("toy", write_example_study(tmp_path / "crash", crash=True).parent)
    with pytest.raises(RuntimeError):
        run_study(crashing, quick=True, seed=1, out_dir=tmp_path / "out")
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before


@pytest.mark.parametrize("overrides, match", [
    ({"study": "other"}, "Result.study"),
    ({"title": "Another title"}, "Result.title"),
    ({"seed": 99}, "Result.seed"),
    ({"figures": ["never_written.png"]}, "did not write"),
])
def test_runner_rejects_a_result_that_misreports_the_run(tmp_path, overrides, match):
    source = write_example_study(tmp_path / "studies", overrides=overrides)
    with pytest.raises(StudyProtocolError, match=match):
        run_study(load_study("toy", source.parent), quick=True, out_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_runner_rejects_claims_that_differ_from_the_declared_ones(tmp_path):
    source = write_example_study(tmp_path / "studies", result_region=(0.0, 2.0))
    with pytest.raises(StudyProtocolError, match="CLAIMS"):
        run_study(load_study("toy", source.parent), quick=True, out_dir=tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_provenance_records_the_git_commit_of_the_study_file(tmp_path):
    repo = tmp_path / "repo"
    write_example_study(repo / "studies")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "toy"], check=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    study = load_study("toy", repo / "studies")
    provenance = run_study(study, quick=True, out_dir=tmp_path / "out").result.provenance
    assert (provenance.git, provenance.git_dirty) == (head, False)
    with open(repo / "studies" / "toy.py", "a") as handle:
        handle.write("# edited after the commit\n")
    assert run_study(study, quick=True, out_dir=tmp_path / "out").result.provenance.git_dirty


def test_save_figure_writes_a_png_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert save_figure(fig, tmp_path, "rate") == "rate.png"
    assert (tmp_path / "rate.png").read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number)
    with pytest.raises(ValueError, match="name"):
        save_figure(plt.figure(), tmp_path, "../escape")
    with pytest.raises(TypeError, match="fig"):
        save_figure("not a figure", tmp_path, "x")
    plt.close("all")

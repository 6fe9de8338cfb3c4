"""Tests of the ``labkit`` command (in-process and as a subprocess), the report, progress bars."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.cli import main
from labkit.progress import progress, progress_enabled
from labkit.report import write_report
from test_study import reject_constant, write_example_study

LABKIT = Path(sys.executable).parent / "labkit"


@pytest.fixture
def studies(tmp_path) -> Path:
    """A studies directory: ``toy`` (supported), ``wrong`` (refuted), ``blind`` (weak control)."""
    directory = tmp_path / "studies"
    write_example_study(directory, "toy")
    write_example_study(directory, "wrong", true_mean=2.0, title="Wrong mean study")
    write_example_study(directory, "blind", control_mean=1.0, title="Blind control study")
    return directory


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_studies_lists_names_titles_and_claims(studies, capsys):
    code, out, _ = run_cli(capsys, "studies", "--studies", studies)
    assert code == 0
    for name, title in [("toy", "Toy mean study"), ("wrong", "Wrong mean study")]:
        assert any(name in line and title in line for line in out.splitlines())
    assert "mean_is_one: The mean is one." in out and "Second line" not in out


def test_studies_marks_a_broken_study_and_fails(studies, capsys):
    (studies / "broken.py").write_text('"""No protocol here."""\n')
    code, out, _ = run_cli(capsys, "studies", "--studies", studies)
    assert code == 1
    assert "broken" in out and "BROKEN" in out and "TITLE" in out


def test_run_applies_the_seed_and_prints_the_summary(studies, tmp_path, capsys):
    out_dir = tmp_path / "results"
    code, out, _ = run_cli(capsys, "run", "toy", "--quick", "--out", out_dir, "--seed", 11,
                           "--studies", studies)
    assert code == 0
    record = json.loads((out_dir / "toy.json").read_text(), parse_constant=reject_constant)
    assert record["seed"] == 11 and record["config"]["seed"] == 11 and record["quick"] is True
    assert record["tables"]["draws"][1][0] == 11
    assert "mean_is_one" in out and "supported" in out and "[0.9, 1.1]" in out
    assert f"wrote {out_dir / 'toy.json'}" in out and f"wrote {out_dir / 'toy.png'}" in out


def test_run_without_quick_uses_the_full_config(studies, tmp_path, capsys):
    code, _, _ = run_cli(capsys, "run", "toy", "--out", tmp_path / "r", "--studies", studies)
    record = json.loads((tmp_path / "r" / "toy.json").read_text())
    assert code == 0 and record["quick"] is False and record["config"]["n"] == 2000


def test_a_refuted_claim_still_exits_zero(studies, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "run", "wrong", "--quick", "--out", tmp_path,
                           "--studies", studies)
    assert code == 0
    assert "refuted" in out
    assert json.loads((tmp_path / "wrong.json").read_text())["checks"][0]["verdict"] == "refuted"


def test_a_control_that_is_not_refuted_is_flagged_in_the_summary(studies, tmp_path, capsys):
    code, out, _ = run_cli(capsys, "run", "blind", "--quick", "--out", tmp_path,
                           "--studies", studies)
    assert code == 0
    assert "NO" in out.split() and "WARNING mean_is_one" in out
    check = json.loads((tmp_path / "blind.json").read_text())["checks"][0]
    assert check["control_ok"] is False and check["control"]["verdict"] == "supported"


def test_an_unknown_study_exits_2_and_lists_the_known_ones(studies, tmp_path, capsys):
    code, _, err = run_cli(capsys, "run", "nope", "--out", tmp_path, "--studies", studies)
    assert code == 2
    assert "nope" in err and "blind, toy, wrong" in err
    assert not list(tmp_path.glob("*.json"))


def test_a_protocol_violation_exits_2_and_names_what_is_missing(tmp_path, capsys):
    (tmp_path / "bad.py").write_text('"""Docstring only."""\nTITLE = "Bad"\n')
    code, _, err = run_cli(capsys, "run", "bad", "--out", tmp_path / "r", "--studies", tmp_path)
    assert code == 2
    assert "Config" in err and "run(config, out_dir)" in err


def test_a_crashing_study_exits_1_with_its_traceback_and_no_record(tmp_path, capsys):
    write_example_study(tmp_path / "studies", crash=True)
    out_dir = tmp_path / "results"
    code, _, err = run_cli(capsys, "run", "toy", "--quick", "--out", out_dir,
                           "--studies", tmp_path / "studies")
    assert code == 1
    assert "Traceback" in err and "planted crash" in err
    assert list(out_dir.iterdir()) == []


def test_bad_arguments_exit_2(capsys):
    assert main(["run"]) == 2
    assert main(["run", "toy", "--seed", "x"]) == 2
    assert main(["report", "/does/not/exist"]) == 2
    assert main(["studies", "--studies", "/does/not/exist"]) == 2
    capsys.readouterr()
    code, _, err = run_cli(capsys, "run", "toy", "--out", __file__, "--studies",
                           Path(__file__).parent)
    assert code == 2 and "--out must be a directory" in err


def test_report_gathers_records_with_titles_figures_and_warnings(studies, tmp_path, capsys):
    out_dir = tmp_path / "results"
    for name in ("toy", "wrong", "blind"):
        assert main(["run", name, "--quick", "--out", str(out_dir), "--studies", str(studies)]) == 0
    (out_dir / "notes.json").write_text('{"not": "a record"}')
    capsys.readouterr()
    code, out, err = run_cli(capsys, "report", out_dir)
    assert code == 0
    page = (out_dir / "report.md").read_text()
    for title in ("Toy mean study", "Wrong mean study", "Blind control study"):
        assert f"## {title}" in page
    assert "![toy.png](toy.png)" in page and "**refuted**" in page and "**NO**" in page
    assert '"n": 200' in page and "- python:" in page
    assert "notes.json" in err and f"wrote {out_dir / 'report.md'}" in out
    elsewhere = write_report(out_dir, tmp_path / "site" / "index.md")
    assert "![toy.png](../results/toy.png)" in elsewhere.path.read_text()
    assert len(elsewhere.results) == 3
    assert [s.path.name for s in elsewhere.skipped] == ["notes.json"]


def test_report_of_a_directory_without_records_says_so(tmp_path, capsys):
    code, _, err = run_cli(capsys, "report", tmp_path)
    assert code == 0 and "no result records" in err
    assert "No result records found." in (tmp_path / "report.md").read_text()


DOCS = Path(__file__).resolve().parents[1] / "docs" / "studies.md"


def test_the_example_study_in_the_docs_runs_and_its_control_is_refuted(tmp_path, capsys):
    text = DOCS.read_text()
    source = text.split("```python\n", 1)[1].split("```", 1)[0]
    (tmp_path / "mc_rate.py").write_text(source)
    code, out, _ = run_cli(capsys, "run", "mc_rate", "--quick", "--out", tmp_path / "r",
                           "--studies", tmp_path)
    assert code == 0, out
    check = json.loads((tmp_path / "r" / "mc_rate.json").read_text())["checks"][0]
    assert (check["verdict"], check["control"]["verdict"]) == ("supported", "refuted")


def test_the_installed_command_runs_a_study(studies, tmp_path):
    assert LABKIT.exists(), "the console script is missing: reinstall labkit in the venv"
    env = {**os.environ, "LABKIT_STUDIES": str(studies), "CI": "true"}
    done = subprocess.run([str(LABKIT), "run", "wrong", "--quick", "--seed", "5", "--out",
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refuted" in done.stdout
    assert json.loads((tmp_path / "wrong.json").read_text())["seed"] == 5


# ---------------------------------------------------------------- progress bars

def test_progress_yields_every_item_whether_or_not_a_bar_is_drawn():
    assert list(progress(range(5), enable=False)) == [0, 1, 2, 3, 4]
    assert list(progress(iter("abc"), total=3, desc="letters", enable=True)) == ["a", "b", "c"]


def test_progress_is_off_in_ci_and_when_not_a_tty_unless_forced(monkeypatch):
    monkeypatch.delenv("LABKIT_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert not progress_enabled()
    assert progress_enabled(True)
    monkeypatch.setenv("LABKIT_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.setenv("LABKIT_PROGRESS", "0")
    monkeypatch.delenv("CI")
    assert not progress_enabled()
    monkeypatch.delenv("LABKIT_PROGRESS")
    monkeypatch.setattr(sys, "stderr", open(os.devnull, "w"))  # not a TTY
    assert not progress_enabled()
    with pytest.raises(TypeError, match="enable"):
        progress_enabled("yes")

"""The teaching examples under docs/examples run and produce their figure."""

import runpy
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def test_noised_densities_example(tmp_path, monkeypatch):
    out = tmp_path / "densities.png"
    monkeypatch.setattr(sys, "argv", ["noised_densities.py", str(out)])
    runpy.run_path(str(EXAMPLES / "noised_densities.py"), run_name="__main__")
    assert out.stat().st_size > 10_000


def test_measure_a_sampler_example(capsys):
    """The printed lines quoted in docs/getting-started.md (seeded, float64)."""
    runpy.run_path(str(EXAMPLES / "measure_a_sampler.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    doc = (EXAMPLES.parent / "getting-started.md").read_text()
    assert len(lines) == 4 and all(line in doc for line in lines)

"""docs/solvers.md documents every registered solver with its declared properties."""

import re
from pathlib import Path

import pytest

from labkit.solvers import SOLVERS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "solvers.md").read_text()
GLANCE = DOC[DOC.index("## All solvers at a glance"):DOC.index("## The solver protocol")]
ROWS = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", GLANCE, re.M)}


def test_glance_table_lists_exactly_the_registry():
    assert list(ROWS) == list(SOLVERS)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_glance_row_matches_declarations(name):
    cls = SOLVERS[name]
    cells = [c.strip() for c in ROWS[name].strip("|").split("|")]
    assert cells[1] == f"`{cls.__name__}`"
    assert cells[2] == ("yes" if cls.stochastic else "no")
    order = cls().order
    if order is None:
        assert cells[3].startswith("—")
    else:
        assert cells[3] == f"{order:g}"
    assert f"`{name}`" in DOC[DOC.index("## The solver protocol"):], \
        f"{name} has no section beyond the summary table"

"""Text forms of numbers, regions and tables shared by the ``labkit`` command and the report."""

from __future__ import annotations

import math
from typing import Any, Sequence


def format_number(x: Any, digits: int = 4) -> str:
    """A float to ``digits`` significant digits (``inf``, ``-inf``, ``nan`` spelled out); other
    values through ``str``."""
    if isinstance(x, float):
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return f"{x:.{digits}g}"
    return "" if x is None else str(x)


def format_interval(pair: Sequence[float], digits: int = 4) -> str:
    """A closed interval as ``[lo, hi]``; an infinite end gets an open bracket, ``(-inf, 0]``."""
    lo, hi = pair
    left = "(" if math.isinf(lo) else "["
    right = ")" if math.isinf(hi) else "]"
    return f"{left}{format_number(float(lo), digits)}, {format_number(float(hi), digits)}{right}"


def format_text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (for terminals)."""
    cells = [[str(h) for h in header]] + [[format_number(c) for c in row] for row in rows]
    widths = [max(len(row[j]) for row in cells) for j in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _markdown_cell(value: Any) -> str:
    return format_number(value).replace("|", "\\|").replace("\n", " ")


def format_markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (pipes in cells escaped)."""
    lines = ["| " + " | ".join(_markdown_cell(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

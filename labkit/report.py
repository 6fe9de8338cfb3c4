"""One Markdown page gathering the result records of a directory (``labkit report DIR``).

Per study: the title, the checks (claim, region, measured value and interval, verdict, negative
control), the study's tables, its figures as relative image links, the config and provenance.
Files in the directory that are not result records are skipped and reported as such.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .study._files import atomic_write_text
from .study.formatting import format_interval, format_markdown_table, format_number
from .study.records import VERDICTS
from .study.result import Result, load_record

CHECK_HEADER = ("claim", "statement", "quantity", "claimed region", "measured", "95% interval",
                "n", "interval method", "verdict", "control", "control interval",
                "control verdict", "control ok")


@dataclass(frozen=True)
class SkippedFile:
    """A JSON file of the directory that is not a result record, with the reason."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Report:
    """A rendered report.

    Attributes
    ----------
    path : pathlib.Path
        Where the page is (or would be) written.
    markdown : str
        The page.
    results : tuple of Result
        The records it shows, sorted by study name.
    skipped : tuple of SkippedFile
        JSON files that were not records.
    """

    path: Path
    markdown: str
    results: tuple[Result, ...]
    skipped: tuple[SkippedFile, ...]


def collect_records(directory: str | Path) -> tuple[tuple[Result, ...], tuple[SkippedFile, ...]]:
    """Load every ``*.json`` record of ``directory`` (not recursive), sorted by study name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"directory must be an existing directory of result records, "
                         f"got {str(directory)!r}")
    results, skipped = [], []
    for path in sorted(directory.glob("*.json")):
        try:
            results.append(load_record(path))
        except (ValueError, OSError) as err:
            skipped.append(SkippedFile(path, str(err).splitlines()[0]))
    return tuple(sorted(results, key=lambda r: r.study)), tuple(skipped)


def _check_rows(result: Result) -> list[list]:
    return [[c.claim.id, c.claim.statement, c.claim.quantity, format_interval(c.claim.region),
             c.measured.value, format_interval(c.measured.interval), c.measured.n,
             c.measured.method, f"**{c.verdict}**", c.control.statement,
             format_interval(c.control.measured.interval), c.control.verdict,
             "yes" if c.control_ok else "**NO**"] for c in result.checks]


def _image_link(figure: str, records_dir: Path, page_dir: Path) -> str:
    target = os.path.relpath(records_dir / figure, page_dir)
    return f"![{figure}]({quote(Path(target).as_posix())})"


def _study_section(result: Result, records_dir: Path, page_dir: Path) -> list[str]:
    run_kind = "quick run" if result.quick else "full run"
    lines = [f"## {result.title}", "",
             f"Study `{result.study}`, {run_kind}, seed {format_number(result.seed)}.", "",
             "### Checks", "", format_markdown_table(CHECK_HEADER, _check_rows(result)), ""]
    lines += [f"> **Warning** ({c.claim.id}): {c.note}." for c in result.checks if c.note]
    lines += [""] if any(c.note for c in result.checks) else []
    for name, rows in result.tables.items():
        lines += [f"### {name}", "", format_markdown_table(rows[0], rows[1:]), ""]
    if result.figures:
        lines += ["### Figures", ""]
        lines += [_image_link(f, records_dir, page_dir) + "\n" for f in result.figures]
    lines += ["### Config", "", "```json", json.dumps(result.to_dict()["config"], indent=2),
              "```", ""]
    if result.provenance is not None:
        lines += ["### Provenance", ""]
        lines += [f"- {k}: `{json.dumps(v)}`" for k, v in result.provenance.to_dict().items()]
        lines += [""]
    return lines


def _summary(results: tuple[Result, ...]) -> list[str]:
    rows = []
    for r in results:
        counts = Counter(c.verdict for c in r.checks)
        weak = sum(not c.control_ok for c in r.checks)
        rows.append([f"[{r.title}](#{_anchor(r.title)})", r.study,
                     *(counts.get(v, 0) for v in VERDICTS), weak,
                     "quick" if r.quick else "full"])
    header = ["study", "file", *VERDICTS, "controls not refuted", "run"]
    return ["## Summary", "", format_markdown_table(header, rows), ""]


def _anchor(title: str) -> str:
    # GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens.
    kept = "".join(ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return kept.replace(" ", "-")


def render_report(results: tuple[Result, ...], records_dir: str | Path,
                  page_dir: str | Path) -> str:
    """The Markdown page for ``results``; figure links are relative to ``page_dir``."""
    records_dir, page_dir = Path(records_dir).resolve(), Path(page_dir).resolve()
    lines = ["# labkit study report", "",
             f"{len(results)} result record(s) from `{records_dir.name}`. A verdict is "
             f"`supported` when the 95% interval lies inside the claimed region, `refuted` when "
             f"it lies entirely outside, `inconclusive` otherwise.", ""]
    if not results:
        return "\n".join(lines + ["No result records found.", ""])
    lines += _summary(results)
    for result in results:
        lines += _study_section(result, records_dir, page_dir)
    return "\n".join(lines)


def build_report(directory: str | Path, output: str | Path | None = None) -> Report:
    """Render the report of ``directory`` without writing it (``output`` defaults to
    ``DIR/report.md``)."""
    directory = Path(directory)
    results, skipped = collect_records(directory)
    path = Path(output) if output is not None else directory / "report.md"
    return Report(path, render_report(results, directory, path.parent), results, skipped)


def write_report(directory: str | Path, output: str | Path | None = None) -> Report:
    """Render the report of ``directory`` and write it (atomically) to ``output``.

    Parameters
    ----------
    directory : path
        Directory holding ``NAME.json`` records and their figures.
    output : path, optional
        The Markdown file, ``DIR/report.md`` by default; its directory is created if needed.

    Returns
    -------
    Report
    """
    report = build_report(directory, output)
    report.path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report.path, report.markdown)
    return report

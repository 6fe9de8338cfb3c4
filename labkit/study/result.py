"""The result record of a study run (STUDIES.md) and its strict, atomic JSON file."""

from __future__ import annotations

import dataclasses
import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ._files import atomic_write_text
from ._json import from_jsonable, strict_dumps, strict_loads, to_jsonable
from .checks import Check
from .records import _field, _text

Cell = Any  # str, int, float, bool or None


@dataclass(frozen=True)
class Provenance:
    """Where and how a record was produced (filled by the runner; no host names or user paths).

    Parameters
    ----------
    labkit, python, torch, numpy : str
        Versions.
    git : str or None
        Commit of the checkout holding the study file, ``None`` outside a git checkout.
    git_dirty : bool or None
        Whether that checkout had uncommitted changes to tracked files, or the study file itself
        was untracked; ``None`` outside a git checkout.
    device : str
        Device the study ran on (the config's ``device`` field if it has one, else ``"cpu"``).
    wall_s : float
        Wall-clock seconds of ``run``.
    started : str
        Start time, ISO-8601 in UTC.
    """

    labkit: str
    git: str | None
    git_dirty: bool | None
    python: str
    torch: str
    numpy: str
    device: str
    wall_s: float
    started: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Provenance":
        """Inverse of :meth:`to_dict`."""
        return cls(**{f.name: _field(data, f.name, "provenance") for f in dataclasses.fields(cls)})


def _canonical(obj: Any, name: str) -> Any:
    # The JSON form is the canonical one, so a record equals its own round trip.
    return from_jsonable(json.loads(json.dumps(to_jsonable(obj, name))))


def config_as_dict(config: Any) -> dict[str, Any]:
    """A config (dataclass instance or mapping) in the form a record stores it: its JSON dict."""
    if not (isinstance(config, Mapping) or (dataclasses.is_dataclass(config)
                                            and not isinstance(config, type))):
        raise TypeError(f"config must be a dataclass instance or a mapping, "
                        f"got {type(config).__name__}")
    return _canonical(config, "config")


def _tables(tables: Any) -> dict[str, tuple[tuple[Cell, ...], ...]]:
    if not isinstance(tables, Mapping):
        raise TypeError(f"Result.tables must be a mapping name -> rows (header row first), "
                        f"got {type(tables).__name__}")
    out = {}
    for name, rows in tables.items():
        _text(name, "Result.tables key")
        rows = _canonical(rows, f"Result.tables[{name!r}]")
        if not isinstance(rows, list) or not rows or not all(isinstance(r, list) for r in rows):
            raise TypeError(f"Result.tables[{name!r}] must be a non-empty list of rows "
                            f"(header first), each a list of cells")
        width = len(rows[0])
        for i, row in enumerate(rows):
            if len(row) != width:
                raise ValueError(f"Result.tables[{name!r}] row {i} has {len(row)} cells, "
                                 f"the header has {width}")
            for j, cell in enumerate(row):
                if isinstance(cell, (list, dict)):
                    raise TypeError(f"Result.tables[{name!r}][{i}][{j}] must be a number, str, "
                                    f"bool or None, got {type(cell).__name__}")
        out[name] = tuple(tuple(row) for row in rows)
    return out


def _figures(figures: Any) -> tuple[str, ...]:
    if isinstance(figures, str) or not isinstance(figures, Sequence):
        raise TypeError(f"Result.figures must be a list of relative file names, got {figures!r}")
    for name in figures:
        _text(name, "Result.figures entry")
        norm = posixpath.normpath(name)
        if name.startswith(("/", "\\")) or norm.startswith("..") or ":" in name or "\\" in name:
            raise ValueError(f"Result.figures entries must be relative paths inside the output "
                             f"directory (as returned by save_figure), got {name!r}")
    return tuple(figures)


@dataclass(frozen=True)
class Result:
    """The result record of one study run.

    A study's ``run`` fills ``study``, ``title``, ``checks``, ``tables`` and ``figures``; the
    runner fills ``config``, ``seed``, ``quick`` and ``provenance`` (a study may pass ``config``
    and ``seed`` itself, and the runner then checks that they are the ones it ran with).

    Parameters
    ----------
    study : str
        The study's name (its file name without ``.py``).
    title : str
        The study's ``TITLE``.
    checks : sequence of Check
        One per claim, at least one; claim ids must be unique.
    tables : mapping of str to list of rows, optional
        Named tables; the first row is the header. Cells are numbers, strings, booleans or None.
    figures : sequence of str, optional
        File names relative to the output directory (as returned by ``save_figure``).
    config : dataclass instance or mapping, optional
        The config the study ran with; stored as its JSON form (a dict).
    seed : int, optional
    quick : bool, optional
    provenance : Provenance, optional
    """

    study: str
    title: str
    checks: tuple[Check, ...]
    tables: Mapping[str, tuple[tuple[Cell, ...], ...]] = field(default_factory=dict)
    figures: tuple[str, ...] = ()
    config: Mapping[str, Any] | None = None
    seed: int | None = None
    quick: bool = False
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        _text(self.study, "Result.study")
        _text(self.title, "Result.title")
        if isinstance(self.checks, (str, bytes)) or not isinstance(self.checks, Sequence):
            raise TypeError("Result.checks must be a list of Check")
        checks = tuple(self.checks)
        if not checks or not all(isinstance(c, Check) for c in checks):
            raise TypeError("Result.checks must be a non-empty list of Check (one per claim)")
        ids = [c.claim.id for c in checks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"Result.checks must have unique claim ids, got {ids}")
        object.__setattr__(self, "checks", checks)
        object.__setattr__(self, "tables", _tables(self.tables))
        object.__setattr__(self, "figures", _figures(self.figures))
        if self.config is not None:
            object.__setattr__(self, "config", config_as_dict(self.config))
        if self.seed is not None and (isinstance(self.seed, bool)
                                      or not isinstance(self.seed, int)):
            raise TypeError(f"Result.seed must be an int or None, got {self.seed!r}")
        if not isinstance(self.quick, bool):
            raise TypeError(f"Result.quick must be a bool, got {self.quick!r}")
        if self.provenance is not None and not isinstance(self.provenance, Provenance):
            raise TypeError(f"Result.provenance must be a Provenance or None, "
                            f"got {type(self.provenance).__name__}")

    @property
    def verdicts(self) -> dict[str, str]:
        """Claim id -> verdict."""
        return {c.claim.id: c.verdict for c in self.checks}

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON types (non-finite floats as strings, e.g. ``"inf"``)."""
        return {"study": self.study, "title": self.title,
                "checks": [c.to_dict() for c in self.checks],
                "tables": to_jsonable({k: list(v) for k, v in self.tables.items()}, "tables"),
                "figures": list(self.figures),
                "config": to_jsonable(self.config, "config"), "seed": self.seed,
                "quick": self.quick,
                "provenance": None if self.provenance is None else self.provenance.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Result":
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on anything that is not a record."""
        checks = _field(data, "checks", "record")
        if not isinstance(checks, list):
            raise ValueError(f"record.checks must be a list, got {type(checks).__name__}")
        provenance = data.get("provenance")
        try:
            return cls(study=_field(data, "study", "record"), title=_field(data, "title", "record"),
                       checks=[Check.from_dict(c) for c in checks],
                       tables=from_jsonable(data.get("tables", {})),
                       figures=data.get("figures", []), config=data.get("config"),
                       seed=data.get("seed"), quick=data.get("quick", False),
                       provenance=None if provenance is None else Provenance.from_dict(provenance))
        except TypeError as err:
            raise ValueError(f"malformed record: {err}") from err

    def to_json(self) -> str:
        """Strict JSON text of :meth:`to_dict` (never ``Infinity`` or ``NaN`` tokens)."""
        return strict_dumps(self.to_dict())


def write_record(result: Result, path: str | Path) -> Path:
    """Write ``result`` as strict JSON to ``path`` atomically (temp file, fsync, rename).

    Returns
    -------
    pathlib.Path
        The path written.
    """
    if not isinstance(result, Result):
        raise TypeError(f"result must be a Result, got {type(result).__name__}")
    path = Path(path)
    atomic_write_text(path, result.to_json())
    return path


def load_record(path: str | Path) -> Result:
    """Read a record written by :func:`write_record`.

    Raises
    ------
    ValueError
        If the file is not strict JSON or not a result record.
    """
    text = Path(path).read_text(encoding="utf-8")
    try:
        data = strict_loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    return Result.from_dict(data)

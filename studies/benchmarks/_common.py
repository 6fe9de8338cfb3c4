"""Helpers shared by the benchmark scripts (run as ``python studies/benchmarks/NAME.py``, so this
directory is on ``sys.path``; the study runner skips files starting with ``_``)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

from labkit.study import atomic_write_text


def load_module(name: str, path: Path) -> ModuleType:
    """Import the Python file ``path`` as a module called ``name`` (for sibling scripts and test
    fixture generators, which are not packages)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_json(path: Path | str, data: dict) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary file, fsync, rename):
    a crashed benchmark leaves the previous file or none, never a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")

"""Finding, loading and validating study files (the protocol of docs/studies.md).

A study is a file ``NAME.py`` in the studies directory, loaded by path with importlib (the library
never imports ``studies/`` as a package). It defines a module docstring, ``TITLE``, a frozen
dataclass ``Config`` with a ``seed`` field, ``QUICK`` and ``FULL`` instances of it, ``run(config,
out_dir) -> Result`` and, optionally, ``CLAIMS``: the claims fixed before any data is seen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator

from .records import Claim

STUDIES_ENV = "LABKIT_STUDIES"


class StudyProtocolError(ValueError):
    """A study file, or what its ``run`` returned, does not follow the study protocol."""


class UnknownStudyError(LookupError):
    """No study of that name in the studies directory; ``known`` lists the ones there are."""

    def __init__(self, name: str, directory: Path, known: tuple[str, ...]) -> None:
        self.name, self.directory, self.known = name, directory, known
        listing = ", ".join(known) if known else "none"
        super().__init__(f"no study named {name!r} in {directory} (known studies: {listing})")


@dataclass(frozen=True)
class Study:
    """A loaded study file that follows the protocol.

    Attributes
    ----------
    name : str
        File name without ``.py``.
    path : pathlib.Path
    title : str
    doc : str
        The module docstring.
    config_type : type
        The frozen ``Config`` dataclass.
    quick, full : Config
        The ``QUICK`` and ``FULL`` configs.
    run : callable
        ``run(config, out_dir) -> Result``.
    claims : tuple of Claim
        ``CLAIMS`` if the module declares them, else empty.
    """

    name: str
    path: Path
    title: str
    doc: str
    config_type: type
    quick: Any
    full: Any
    run: Callable[[Any, Path], Any]
    claims: tuple[Claim, ...]

    def make_config(self, quick: bool = False, seed: int | None = None) -> Any:
        """``QUICK`` or ``FULL``, with ``seed`` replaced when given."""
        config = self.quick if quick else self.full
        if seed is None:
            return config
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        return dataclasses.replace(config, seed=seed)


@dataclass(frozen=True)
class StudyEntry:
    """One file found by :func:`discover_studies`: the loaded study, or why it failed to load."""

    name: str
    path: Path
    study: Study | None
    error: str | None


def resolve_studies_dir(explicit: str | Path | None = None, *,
                        cwd: str | Path | None = None) -> Path:
    """The studies directory: ``explicit``, else ``$LABKIT_STUDIES``, else ``./studies``, else
    the ``studies/`` folder next to the labkit source (editable installs).

    Raises
    ------
    ValueError
        If the chosen directory does not exist, or none of the candidates does.
    """
    for source, value in (("studies directory", explicit),
                          (f"${STUDIES_ENV}", os.environ.get(STUDIES_ENV) or None)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise ValueError(f"{source} must be an existing directory, got {str(path)!r}")
            return path
    local = Path(cwd or Path.cwd()) / "studies"
    if local.is_dir():
        return local
    import labkit
    beside = Path(labkit.__file__).resolve().parents[1] / "studies"
    if beside.is_dir():
        return beside
    raise ValueError(f"no studies directory found: pass --studies DIR or set ${STUDIES_ENV} "
                     f"(looked in {local} and {beside})")


def study_files(directory: str | Path) -> tuple[Path, ...]:
    """The study files of ``directory``: ``*.py`` not starting with ``_``, sorted (not recursive,
    so ``benchmarks/`` and other folders are skipped)."""
    directory = Path(directory)
    return tuple(sorted(p for p in directory.glob("*.py")
                        if p.is_file() and not p.name.startswith("_")))


@contextlib.contextmanager
def _on_sys_path(directory: Path) -> Iterator[None]:
    # Lets a study import private helpers that live beside it (``studies/_common.py``).
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.insert(0, entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def _import_file(path: Path) -> ModuleType:
    module_name = f"labkit_study_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise StudyProtocolError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    # Registered before executing: dataclasses resolve their module through sys.modules.
    sys.modules[module_name] = module
    try:
        with _on_sys_path(path.parent):
            spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _problems(module: ModuleType) -> list[str]:
    problems = []
    if not (module.__doc__ or "").strip():
        problems.append("a module docstring (paper, claim, why the toy setting tests it)")
    title = getattr(module, "TITLE", None)
    if not isinstance(title, str) or not title.strip():
        problems.append("TITLE: a non-empty str")
    config_type = getattr(module, "Config", None)
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)
            and config_type.__dataclass_params__.frozen):
        problems.append("Config: a frozen dataclass (@dataclass(frozen=True))")
    elif "seed" not in {f.name for f in dataclasses.fields(config_type)}:
        problems.append("Config.seed: a field 'seed: int = 0'")
    else:
        for name in ("QUICK", "FULL"):
            if not isinstance(getattr(module, name, None), config_type):
                problems.append(f"{name}: an instance of Config")
    run = getattr(module, "run", None)
    try:
        inspect.signature(run).bind(None, None)
    except (TypeError, ValueError):
        problems.append("run(config, out_dir) -> Result: a function of two arguments")
    claims = getattr(module, "CLAIMS", ())
    if not isinstance(claims, (tuple, list)) or not all(isinstance(c, Claim) for c in claims):
        problems.append("CLAIMS (optional): a tuple of Claim")
    elif len({c.id for c in claims}) != len(claims):
        problems.append("CLAIMS (optional): claim ids must be unique")
    return problems


def validate_module(module: ModuleType, path: Path) -> Study:
    """Check that ``module`` follows the study protocol and wrap it as a :class:`Study`.

    Raises
    ------
    StudyProtocolError
        Listing everything that is missing or malformed.
    """
    problems = _problems(module)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise StudyProtocolError(f"study {path.stem!r} ({path}) does not follow the study "
                                 f"protocol (see docs/studies.md); it needs:\n{lines}")
    return Study(name=path.stem, path=path, title=module.TITLE, doc=module.__doc__.strip(),
                 config_type=module.Config, quick=module.QUICK, full=module.FULL, run=module.run,
                 claims=tuple(getattr(module, "CLAIMS", ())))


def load_study_file(path: str | Path) -> Study:
    """Import the study file ``path`` and validate it (import errors propagate unchanged)."""
    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        raise ValueError(f"path must be an existing .py study file, got {str(path)!r}")
    if not path.stem.isidentifier():
        raise StudyProtocolError(f"study file names must be Python identifiers, got {path.name!r}")
    return validate_module(_import_file(path), path)


def load_study(name: str, directory: str | Path) -> Study:
    """Load the study ``name`` from ``directory``.

    Raises
    ------
    UnknownStudyError
        If there is no ``NAME.py`` study file there.
    StudyProtocolError
        If the file does not follow the protocol.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a study name (str), got {type(name).__name__}")
    directory = Path(directory)
    files = {p.stem: p for p in study_files(directory)}
    if name not in files:
        raise UnknownStudyError(name, directory, tuple(files))
    return load_study_file(files[name])


def discover_studies(directory: str | Path) -> tuple[StudyEntry, ...]:
    """Load every study file in ``directory``; a file that fails is kept with its error."""
    entries = []
    for path in study_files(directory):
        try:
            entries.append(StudyEntry(path.stem, path, load_study_file(path), None))
        except Exception as err:  # a broken study must not hide the others
            entries.append(StudyEntry(path.stem, path, None, f"{type(err).__name__}: {err}"))
    return tuple(entries)

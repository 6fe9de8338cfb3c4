"""Running a study: config, seed, staging directory, provenance, atomic record.

The study's ``run`` writes its figures into a private staging directory inside the output
directory. Only when ``run`` has returned a valid :class:`Result` are the files moved next to the
record and the record written (atomically, last). A run that crashes therefore leaves the output
directory as it was: an earlier ``NAME.json`` and its figures stay untouched, and no temporary
files remain.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import Study, StudyProtocolError
from .provenance import collect_provenance, utc_now
from .result import Result, config_as_dict, write_record


@dataclass(frozen=True)
class StudyRun:
    """What :func:`run_study` produced.

    Attributes
    ----------
    result : Result
        The complete record (provenance, seed, config and ``quick`` filled in).
    record : pathlib.Path
        ``OUT/NAME.json``.
    files : tuple of pathlib.Path
        Figures and any other files the study wrote, now in ``OUT``.
    """

    result: Result
    record: Path
    files: tuple[Path, ...]


def _complete(result: Any, study: Study, config: Any, quick: bool, provenance: Any) -> Result:
    """Check what ``run`` returned against what it was asked to do, and fill the runner's fields."""
    where = f"study {study.name!r}: run() returned"
    if not isinstance(result, Result):
        raise StudyProtocolError(f"{where} a {type(result).__name__}, expected a Result")
    if result.study != study.name:
        raise StudyProtocolError(f"{where} Result.study={result.study!r}, expected the file "
                                 f"name {study.name!r}")
    if result.title != study.title:
        raise StudyProtocolError(f"{where} Result.title={result.title!r}, expected TITLE "
                                 f"{study.title!r}")
    ran_with = config_as_dict(config)
    if result.config is not None and result.config != ran_with:
        raise StudyProtocolError(f"{where} Result.config={result.config}, but it ran with "
                                 f"{ran_with}")
    if result.seed is not None and result.seed != config.seed:
        raise StudyProtocolError(f"{where} Result.seed={result.seed}, but it ran with seed "
                                 f"{config.seed}")
    if study.claims:
        declared = {c.id: c for c in study.claims}
        returned = {c.claim.id: c.claim for c in result.checks}
        if declared != returned:
            raise StudyProtocolError(f"{where} claims {sorted(returned)} that differ from "
                                     f"CLAIMS {sorted(declared)}; claims and their regions are "
                                     f"fixed before the data is seen")
    return dataclasses.replace(result, config=ran_with, seed=config.seed, quick=quick,
                               provenance=provenance)


def _move_outputs(staging: Path, out_dir: Path, figures: tuple[str, ...]) -> tuple[Path, ...]:
    missing = [f for f in figures if not (staging / f).is_file()]
    if missing:
        raise StudyProtocolError(f"Result.figures lists files that run() did not write into "
                                 f"out_dir: {missing}")
    moved = []
    for source in sorted(p for p in staging.rglob("*") if p.is_file()):
        target = out_dir / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        moved.append(target)
    return tuple(moved)


def run_study(study: Study, *, quick: bool = False, seed: int | None = None,
              out_dir: str | Path = "results") -> StudyRun:
    """Run ``study`` and write ``out_dir/NAME.json`` with its figures.

    Parameters
    ----------
    study : Study
        From :func:`~labkit.study.load_study`.
    quick : bool, optional
        Use ``QUICK`` instead of ``FULL``.
    seed : int, optional
        Replaces the config's seed (``dataclasses.replace(config, seed=seed)``).
    out_dir : path, optional
        Output directory, created if needed.

    Returns
    -------
    StudyRun

    Raises
    ------
    StudyProtocolError
        If ``run`` returns something that is not a valid record of this study.
    Exception
        Whatever the study raises; the output directory is then left as it was.
    """
    if not isinstance(study, Study):
        raise TypeError(f"study must be a Study (see load_study), got {type(study).__name__}")
    if not isinstance(quick, bool):
        raise TypeError(f"quick must be a bool, got {quick!r}")
    config = study.make_config(quick=quick, seed=seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{study.name}.", suffix=".running", dir=out_dir))
    try:
        started, t0 = utc_now(), time.perf_counter()
        result = study.run(config, staging)
        wall_s = time.perf_counter() - t0
        provenance = collect_provenance(study.path, device=str(getattr(config, "device", "cpu")),
                                        wall_s=wall_s, started=started)
        result = _complete(result, study, config, quick, provenance)
        json.loads(result.to_json())  # fail here, before anything moves, if it cannot be written
        files = _move_outputs(staging, out_dir, result.figures)
        record = write_record(result, out_dir / f"{study.name}.json")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return StudyRun(result, record, files)

"""Provenance of a study run: versions, git commit, device, timing. No host names or paths."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from .result import Provenance

_GIT_TIMEOUT_S = 10


def _git(directory: Path, *args: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True,
                              text=True, timeout=_GIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None


def git_state(study_file: str | Path) -> tuple[str | None, bool | None]:
    """Commit of the git checkout holding ``study_file`` and whether it is dirty.

    Returns ``(None, None)`` when the file is not in a git checkout or git is unavailable; never
    raises. The checkout counts as dirty when tracked files have uncommitted changes or the study
    file itself is untracked (its code is then in no commit).
    """
    path = Path(study_file).resolve()
    head = _git(path.parent, "rev-parse", "HEAD")
    if head is None or head.returncode != 0:
        return None, None
    status = _git(path.parent, "status", "--porcelain", "--untracked-files=no")
    tracked = _git(path.parent, "ls-files", "--error-unmatch", "--", path.name)
    if status is None or tracked is None:
        return head.stdout.strip(), None
    return head.stdout.strip(), bool(status.stdout.strip()) or tracked.returncode != 0


def utc_now() -> str:
    """Current time, ISO-8601 in UTC to the second (``2025-01-31T12:00:00+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def collect_provenance(study_file: str | Path, *, device: str, wall_s: float,
                       started: str) -> Provenance:
    """Provenance of a run of the study in ``study_file``.

    Parameters
    ----------
    study_file : path
        The study's source file (locates the git checkout).
    device : str
        Device the study ran on.
    wall_s : float
        Wall-clock seconds of the run.
    started : str
        ISO-8601 UTC start time (see :func:`utc_now`).
    """
    import numpy
    import torch

    import labkit

    commit, dirty = git_state(study_file)
    return Provenance(labkit=labkit.__version__, git=commit, git_dirty=dirty,
                      python=platform.python_version(), torch=torch.__version__,
                      numpy=numpy.__version__, device=str(device), wall_s=round(wall_s, 3),
                      started=started)

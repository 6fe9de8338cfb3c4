"""Saving study figures next to the result record."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

FIGURE_DPI = 120
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def save_figure(fig: Any, out_dir: str | Path, name: str) -> str:
    """Save a matplotlib figure as ``out_dir/NAME.png`` and close it.

    Only the figure's own canvas is used (``fig.savefig``), so this works headless whatever the
    pyplot backend; the ``labkit`` command also selects the ``Agg`` backend before running a study.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure; it is closed afterwards to free its memory.
    out_dir : path
        The ``out_dir`` given to the study's ``run``.
    name : str
        File name without directories; ``.png`` is appended unless present.

    Returns
    -------
    str
        The file name relative to ``out_dir``, to list in ``Result.figures``.
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib.figure.Figure, got {type(fig).__name__}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be a plain file name of letters, digits, '_', '-' and '.', "
                         f"got {name!r}")
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise ValueError(f"out_dir must be an existing directory, got {str(out_dir)!r}")
    file_name = name if name.endswith(".png") else f"{name}.png"
    try:
        fig.savefig(out_dir / file_name, dpi=FIGURE_DPI, bbox_inches="tight")
    finally:
        import matplotlib.pyplot as plt
        plt.close(fig)
    return file_name

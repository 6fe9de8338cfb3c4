"""Progress bars for long loops, quiet where nobody watches.

A bar is shown only when stderr is a terminal and the ``CI`` environment variable is not true;
``enable=True`` (or ``LABKIT_PROGRESS=1``) forces it on, ``enable=False`` (or ``LABKIT_PROGRESS=0``)
off. Bars go to stderr, so they never mix with a command's printed results.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

PROGRESS_ENV = "LABKIT_PROGRESS"
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def progress_enabled(enable: bool | None = None) -> bool:
    """Whether a progress bar should be drawn.

    Parameters
    ----------
    enable : bool or None, optional
        ``True``/``False`` decide; ``None`` consults ``$LABKIT_PROGRESS``, then shows a bar only
        if stderr is a TTY and ``$CI`` is not true.
    """
    if enable is not None:
        if not isinstance(enable, bool):
            raise TypeError(f"enable must be a bool or None, got {enable!r}")
        return enable
    forced = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if forced in _TRUE:
        return True
    if forced in _FALSE:
        return False
    if os.environ.get("CI", "").strip().lower() in _TRUE:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty())


def progress(iterable: Iterable[T], total: int | None = None, desc: str | None = None,
             enable: bool | None = None, **tqdm_options: Any) -> Iterable[T]:
    """Iterate over ``iterable`` with a tqdm bar when :func:`progress_enabled` says so.

    Parameters
    ----------
    iterable : iterable
        What to loop over.
    total : int, optional
        Number of items, when ``len(iterable)`` is unavailable.
    desc : str, optional
        Label shown before the bar.
    enable : bool or None, optional
        See :func:`progress_enabled`.
    **tqdm_options
        Passed to ``tqdm`` (``unit``, ``leave``, ...).

    Returns
    -------
    iterable
        A ``tqdm`` iterator yielding the same items (it also has ``set_postfix`` and friends).

    Examples
    --------
    >>> sum(progress(range(3), desc="steps", enable=False))
    3
    """
    if total is not None and (isinstance(total, bool) or not isinstance(total, int) or total < 0):
        raise ValueError(f"total must be a non-negative int or None, got {total!r}")
    if desc is not None and not isinstance(desc, str):
        raise TypeError(f"desc must be a str or None, got {type(desc).__name__}")
    return tqdm(iterable, total=total, desc=desc, disable=not progress_enabled(enable),
                file=sys.stderr, dynamic_ncols=True, **tqdm_options)

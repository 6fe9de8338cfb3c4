"""The registry of forward processes: ``PROCESSES`` and ``get_process``."""

from __future__ import annotations

from typing import Any

from .base import Process
from .schedules import EDM, VE, VP, CosineVP, RectifiedFlow

PROCESSES: dict[str, type[Process]] = {"ve": VE, "vp": VP, "cosine": CosineVP, "edm": EDM,
                                       "rectified_flow": RectifiedFlow}
"""Process classes by name (the keys ``get_process`` accepts)."""


def get_process(name_or_instance: str | Process, **kwargs: Any) -> Process:
    """Return a process given its registry name (built with ``kwargs``) or an instance.

    Parameters
    ----------
    name_or_instance : str or Process
        A key of ``PROCESSES`` (case-insensitive) or a ``Process``, returned as is.
    **kwargs
        Constructor arguments, only with a name (e.g. ``get_process("vp", beta_max=10.0)``).

    Returns
    -------
    Process

    Examples
    --------
    >>> get_process("cosine").sigma_max > 600
    True
    """
    if isinstance(name_or_instance, Process):
        if kwargs:
            raise ValueError(f"keyword arguments {sorted(kwargs)} are only accepted with a "
                             f"process name, not with the instance {name_or_instance!r}")
        return name_or_instance
    if not isinstance(name_or_instance, str):
        raise TypeError(f"process must be a name in {sorted(PROCESSES)} or a Process instance, "
                        f"got {type(name_or_instance).__name__}")
    key = name_or_instance.lower()
    if key not in PROCESSES:
        raise ValueError(f"unknown process {name_or_instance!r}; valid names: "
                         f"{', '.join(PROCESSES)}")
    return PROCESSES[key](**kwargs)

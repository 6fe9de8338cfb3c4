"""Strict JSON for result records: non-finite floats become strings, never ``Infinity``.

Python's ``json`` module writes ``Infinity`` and ``NaN`` by default, which strict parsers (and
most other languages) reject. Records are meant to outlive the tools that wrote them, so every
non-finite float is written as one of the JSON strings ``"inf"``, ``"-inf"`` or ``"nan"`` and read
back as the float. Integers, strings, booleans and ``null`` are written unchanged.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import pathlib
from typing import Any

import numpy as np

NON_FINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_float(x: float) -> float | str:
    """``x`` unchanged when finite, else the string ``"inf"``, ``"-inf"`` or ``"nan"``."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def decode_float(value: Any, name: str) -> float:
    """Read a float written by :func:`encode_float` (a number or one of the non-finite strings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{name} must be a number or one of the strings 'inf', '-inf', 'nan', "
                         f"got {value!r}")
    if isinstance(value, str):
        if value not in NON_FINITE:
            raise ValueError(f"{name} must be a number or one of the strings 'inf', '-inf', "
                             f"'nan', got {value!r}")
        return NON_FINITE[value]
    return float(value)


def to_jsonable(obj: Any, name: str) -> Any:
    """Convert ``obj`` to plain JSON types, recursively.

    Dataclass instances become dicts, tuples become lists, numpy and 0-d torch scalars become
    Python numbers, paths and enums become strings, non-finite floats become strings. Anything else
    raises ``TypeError`` naming the offending entry (``name`` is the path to it, e.g.
    ``config['grid']``).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return encode_float(obj)
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item(), name)
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v, f"{name}[{i}]") for i, v in enumerate(obj.tolist())]
    if hasattr(obj, "ndim") and hasattr(obj, "tolist") and hasattr(obj, "device"):
        # A torch tensor, detected without importing torch here.
        return to_jsonable(obj.detach().cpu().tolist(), name)
    if isinstance(obj, (pathlib.PurePath, enum.Enum)):
        return str(obj.value if isinstance(obj, enum.Enum) else obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name), f"{name}.{f.name}")
                for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{name} must have str keys to be written as JSON, "
                                f"got key {key!r}")
            out[key] = to_jsonable(value, f"{name}[{key!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{name}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(f"{name} must hold only numbers, strings, booleans, None, lists, dicts or "
                    f"dataclasses to be written as JSON, got {type(obj).__name__}")


def from_jsonable(obj: Any) -> Any:
    """Inverse of :func:`to_jsonable` for the non-finite strings: ``"inf"`` becomes ``math.inf``.

    A genuine string cell ``"inf"`` is therefore read back as a float; records never need one.
    """
    if isinstance(obj, str):
        return NON_FINITE.get(obj, obj)
    if isinstance(obj, list):
        return [from_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: from_jsonable(v) for k, v in obj.items()}
    return obj


def _reject_constant(token: str) -> Any:
    raise ValueError(f"invalid JSON constant {token!r}: records write non-finite numbers as the "
                     f"strings 'inf', '-inf', 'nan'")


def strict_loads(text: str) -> Any:
    """Parse JSON text, rejecting the non-standard constants ``Infinity`` and ``NaN``."""
    return json.loads(text, parse_constant=_reject_constant)


def strict_dumps(obj: Any) -> str:
    """Serialise already-JSONable ``obj``; raises ``ValueError`` on any non-finite float left."""
    return json.dumps(obj, indent=2, allow_nan=False) + "\n"

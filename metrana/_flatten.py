"""Flattening ``init(config=...)`` into run attributes (``config/<key>/<subkey>/...``).

ML configs hold more than JSON types: paths (``pathlib.Path``), enums, numpy arrays and
scalars. Those map to what a reader of the run expects (a path as its string, an enum by its
value, an array like the nested list it holds); anything else is a ``TypeError`` naming the key,
raised from ``init()`` before anything is sent.
"""

from __future__ import annotations

import datetime
import enum
import os
import re
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from ._exceptions import MetranaConfigError
from ._series import check_text
from ._wire import json_number

__all__ = ["MAX_CONFIG_LEAVES", "flatten_config"]

MAX_CONFIG_LEAVES = 10_000
_KEY = re.compile(r"[a-zA-Z0-9._\-:/]+\Z")
_INT64 = (-(2**63), 2**63 - 1)


def flatten_config(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Return wire ``AttributeUpdate`` dicts for every leaf of ``config``.

    Raises:
        TypeError: a value of an unsupported type (the message names its path).
        MetranaConfigError: a bad key, two keys that flatten to one path, too many leaves.
    """
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict, got {type(config).__name__}")
    out: dict[str, dict[str, Any]] = {}
    _walk(config, "config", out)
    return list(out.values())


def _walk(value: Any, path: str, out: dict[str, dict[str, Any]]) -> None:
    if value is None:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"config key {key!r} at {path} must be a str")
            if not _KEY.match(key):
                raise MetranaConfigError(
                    f"config key {key!r} at {path} may only use letters, digits and . _ - : /"
                )
            _walk(item, f"{path}/{key}", out)
        return
    if isinstance(value, enum.Enum):  # before the scalar types: IntEnum is an int, StrEnum a str
        _walk(value.value, path, out)
        return
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(item, f"{path}/{index}", out)
        return
    if _is_array(value):  # numpy arrays, torch tensors: like the nested lists they hold
        _walk(value.tolist(), path, out)
        return
    leaf = _leaf(value, path)
    if path in out:
        raise MetranaConfigError(
            f"two config keys flatten to the same attribute path {path!r}; rename one"
        )
    if len(out) >= MAX_CONFIG_LEAVES:
        raise MetranaConfigError(f"config has more than {MAX_CONFIG_LEAVES} values")
    out[path] = {"path": path, **leaf}


def _leaf(value: Any, path: str) -> dict[str, Any]:
    if isinstance(value, bool):  # before int: bool is an int
        return {"boolValue": value}
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise MetranaConfigError(f"config value at {path} does not fit in 64 bits: {value}")
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"floatValue": json_number(value)}
    if isinstance(value, str):
        try:
            return {"stringValue": check_text(value, f"config value at {path}")}
        except ValueError as exc:
            raise MetranaConfigError(str(exc)) from None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return {"stringValue": str(value)}
    if isinstance(value, (os.PathLike, PurePath)):  # checkpoint dirs, data paths: as strings
        return {"stringValue": os.fsdecode(os.fspath(value))}
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if callable(item) and (shape is None or tuple(shape) == ()):
        return _leaf(item(), path)  # numpy / torch scalars, 0-d arrays and tensors
    raise TypeError(
        f"config value at {path} has unsupported type {type(value).__name__}; use bool, int, "
        "float, str, datetime, pathlib.Path, Enum, numpy arrays, or dicts and lists of those "
        "(convert other values to one of these, or leave them out)"
    )


def _is_array(value: Any) -> bool:
    """A numpy array or torch tensor with at least one dimension (0-d ones are scalars)."""
    shape = getattr(value, "shape", None)
    return (shape is not None and callable(getattr(value, "tolist", None))
            and not isinstance(value, (str, bytes)) and _ndim(shape) > 0)


def _ndim(shape: Any) -> int:
    try:
        return len(tuple(shape))
    except TypeError:
        return 0

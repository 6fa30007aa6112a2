"""Flattening ``init(config=...)`` into run attributes (``config/<key>/<subkey>/...``)."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Mapping
from typing import Any

from ._exceptions import MetranaConfigError
from ._series import check_text

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
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _walk(item, f"{path}/{index}", out)
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
        return {"floatValue": _float_json(value)}
    if isinstance(value, str):
        try:
            return {"stringValue": check_text(value, f"config value at {path}")}
        except ValueError as exc:
            raise MetranaConfigError(str(exc)) from None
    if isinstance(value, (datetime.datetime, datetime.date)):
        return {"stringValue": str(value)}
    item = getattr(value, "item", None)
    shape = getattr(value, "shape", None)
    if callable(item) and (shape is None or shape == () or shape == []):
        return _leaf(item(), path)  # numpy / torch scalars
    raise TypeError(
        f"config value at {path} has unsupported type {type(value).__name__}; use bool, int, "
        "float, str, datetime, or dicts and lists of those"
    )


def _float_json(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")

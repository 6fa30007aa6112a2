"""Vectorized logging: many points of a series in one call, for high-rate (RL) loops.

A call turns into one :class:`Block` per series in the inbox — the caller pays per series, not
per point; the engine expands blocks into points. numpy is optional: arrays are accepted when
it is installed, lists and tuples always.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import attrs

from ._series import MAX_STEP, SeriesKey, check_int, check_timestamp, coerce_value

__all__ = ["ArrayLike", "Block", "Steps", "as_values", "is_vector", "one_each", "per_env", "rows",
           "steps_for", "timestamps_for"]

# A numpy array (or anything with ``ndim`` and ``tolist``); numpy itself is optional.
ArrayLike = Any
# What step=, env_step= and episode= accept: one int, or one per value in a vectorized call.
Steps = Union[int, Sequence[int], ArrayLike, None]  # noqa: UP007 - a runtime alias


@attrs.define(eq=False)
class Block:
    """Consecutive points of one series. ``steps``: None (automatic), a first step, or one
    step per value; ``ts``: one timestamp for all, or one per value (an import's recorded
    times). Index 0 is the key, like a scalar inbox item."""

    key: SeriesKey
    steps: int | list[int] | None
    major: int | None
    values: list[float]
    ts: int | list[int]

    def __getitem__(self, index: int) -> Any:  # the StepCounter groups items by item[0]
        if index == 0:
            return self.key.index
        raise IndexError(index)

    def expand(self) -> list[tuple[int, int | None, int | None, float, int]]:
        key, major, ts, steps = self.key.index, self.major, self.ts, self.steps
        if not isinstance(ts, int):
            if steps is None or isinstance(steps, int):
                first = steps
                return [(key, None if first is None else first + i, major, v, t)
                        for i, (v, t) in enumerate(zip(self.values, ts, strict=True))]
            return [(key, s, major, v, t)
                    for s, v, t in zip(steps, self.values, ts, strict=True)]
        if steps is None:
            return [(key, None, major, v, ts) for v in self.values]
        if isinstance(steps, int):
            return [(key, steps + i, major, v, ts) for i, v in enumerate(self.values)]
        return [(key, s, major, v, ts) for s, v in zip(steps, self.values, strict=True)]


def is_vector(value: Any) -> bool:
    """A 1-D (or 2-D) batch of values rather than one value."""
    if isinstance(value, (list, tuple)):
        return True
    ndim = getattr(value, "ndim", None)
    return isinstance(ndim, int) and ndim >= 1 and hasattr(value, "tolist")


def _flat_floats(values: Any, name: str) -> list[float]:
    if hasattr(values, "tolist") and hasattr(values, "dtype"):  # numpy (or torch) array
        kind = getattr(values.dtype, "kind", "f")
        if kind not in "fiub":
            raise TypeError(f"values for {name!r} must be numbers, got an array of {values.dtype}")
        values = values.tolist()
    return [v if type(v) is float else coerce_value(v, name) for v in values]


def as_values(values: Any, name: str) -> list[float]:
    """A 1-D batch as floats (TypeError naming the metric otherwise)."""
    ndim = getattr(values, "ndim", 1)
    if ndim != 1:
        raise TypeError(f"values for {name!r} must be 1-D here, got {ndim} dimensions")
    out = _flat_floats(values, name)
    if out and isinstance(values, (list, tuple)) and any(is_vector(v) for v in values[:1]):
        raise TypeError(f"values for {name!r} must be 1-D here, got a nested sequence")
    return out


def rows(values: Any, count: int, name: str) -> list[list[float]]:
    """``[M]`` or ``[M, T]`` values for M environments → M lists of floats."""
    if hasattr(values, "ndim") and hasattr(values, "tolist"):
        if values.ndim not in (1, 2):
            raise TypeError(f"values for {name!r} must be [envs] or [envs, steps], got "
                            f"{values.ndim} dimensions")
        if values.shape[0] != count:
            raise ValueError(f"values for {name!r} have {values.shape[0]} rows for {count} envs")
        if values.ndim == 1:
            return [[v] for v in _flat_floats(values, name)]
        return [_flat_floats(row, name) for row in values]
    if not isinstance(values, (list, tuple)):
        raise TypeError(f"with a list of env_id, values for {name!r} must be a list or array")
    if len(values) != count:
        raise ValueError(f"values for {name!r} have {len(values)} rows for {count} envs")
    return [as_values(row, name) if is_vector(row) else [coerce_value(row, name)] for row in values]


def one_each(values: Any, count: int, name: str) -> list[float]:
    """``[M]`` values for M environments, one each (a finished episode's return, say)."""
    if not is_vector(values):
        raise TypeError(f"with a list of env_id, values for {name!r} must be a list or array "
                        f"of one value per environment, got {type(values).__name__}")
    nested = isinstance(values, (list, tuple)) and any(is_vector(v) for v in values)
    if getattr(values, "ndim", 1) != 1 or nested:
        raise TypeError(f"values for {name!r} must have shape [envs], one finished episode "
                        f"per environment; got {getattr(values, 'shape', 'a nested sequence')}")
    floats = as_values(values, name)
    if len(floats) != count:
        raise ValueError(f"values for {name!r} have {len(floats)} entries for {count} envs")
    return floats


def steps_for(step: Any, count: int, what: str) -> int | list[int] | None:
    """``None`` (automatic), a first step, or one strictly increasing step per value."""
    if step is None:
        return None
    if is_vector(step):
        steps = [check_int(s, what) for s in (step.tolist() if hasattr(step, "tolist") else step)]
        if len(steps) != count:
            raise ValueError(f"{what} has {len(steps)} entries for {count} values")
        return steps
    return check_int(step, what)


def timestamps_for(timestamp: Any, count: int) -> list[int]:
    """One timestamp per value (Unix ns, each in [0, 2**63-1]); a numpy integer array is
    checked whole."""
    if hasattr(timestamp, "dtype") and hasattr(timestamp, "tolist"):
        kind = getattr(timestamp.dtype, "kind", "")
        if kind == "f":
            raise TypeError("timestamp is Unix time in integer nanoseconds (e.g. time.time_ns()), "
                            "got an array of floats")
        if kind not in "iu":
            raise TypeError(f"timestamp must be integers, got an array of {timestamp.dtype}")
        if getattr(timestamp, "ndim", 1) != 1:
            raise TypeError(f"timestamp must be 1-D, got {timestamp.ndim} dimensions")
        stamps: list[int] = timestamp.tolist()
        if stamps and (min(stamps) < 0 or max(stamps) > MAX_STEP):
            raise ValueError("a timestamp is outside what int64 nanoseconds hold (1970 to 2262)")
    else:
        stamps = [check_timestamp(t) for t in timestamp]
    if len(stamps) != count:
        raise ValueError(f"timestamp has {len(stamps)} entries for {count} values")
    return stamps


def per_env(value: Any, count: int, what: str) -> Sequence[Any]:
    """A scalar broadcast to every environment, or one entry per environment."""
    if is_vector(value):
        values = value.tolist() if hasattr(value, "tolist") else list(value)
        if len(values) != count:
            raise ValueError(f"{what} has {len(values)} entries for {count} envs")
        return values
    return [value] * count

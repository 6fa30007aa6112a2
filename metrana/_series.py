"""Series identity and the cheap call-site checks behind ``log()``.

Everything here runs in the caller's thread, so the common case (a known metric name, a
float value) must be a couple of dict lookups and type checks; the slow paths raise errors a
user can act on.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Mapping
from typing import Any

import attrs

from ._enums import StandardMetricScale
from ._exceptions import MetranaMetricNameError

__all__ = [
    "MAX_STEP",
    "PLAUSIBLE_NS",
    "SeriesKey",
    "check_text",
    "check_int",
    "check_name",
    "check_timestamp",
    "coerce_value",
    "label_tuple",
    "resolve_scale",
]

_SCALES = {s.value: s.value for s in StandardMetricScale}
_SCALES.update({s.value.lower(): s.value for s in StandardMetricScale})
MAX_STEP = 2**63 - 1  # steps and timestamps are stored as signed 64-bit integers
PLAUSIBLE_NS = 10**17  # 1973-03-03 in nanoseconds; smaller is likely seconds or milliseconds
_WHITESPACE = re.compile(r"\s")


@attrs.define(eq=False)
class SeriesKey:
    """Identity of one series. Standard: (name, scale, labels). RL adds env id and episode.

    Compared and hashed by identity, so a session hands out one object per series: see
    :meth:`Session._intern`.
    """

    rl: bool
    name: str
    scale: str
    labels: tuple[tuple[str, str], ...]
    env_id: str = ""
    episode: int | None = None
    # Set (in the caller's thread, before the point is queued) once a point of this series
    # carried its own step; the StepCounter then checks points one by one.
    manual_seen: bool = False
    # Set once a Block (vectorized call) of this series was queued: the engine expands them.
    vector_seen: bool = False
    # Position in the session's series table. Inbox items carry this int, not the key: a
    # tuple of plain numbers is dropped from the garbage collector's watch after its first
    # pass, while one holding an object is re-scanned every collection — at millions of
    # queued points that was a third of the client's time.
    index: int = -1

    @property
    def identity(self) -> tuple[object, ...]:
        return (self.rl, self.name, self.scale, self.labels, self.env_id, self.episode)

    def describe(self) -> str:
        parts = [self.name, self.scale]
        if self.labels:
            parts.append(",".join(f"{k}={v}" for k, v in self.labels))
        if self.env_id:
            parts.append(f"env={self.env_id}")
        if self.episode is not None:
            parts.append(f"episode={self.episode}")
        return "/".join(parts)


def check_text(text: str, what: str) -> str:
    """A str that can be sent: valid UTF-8, so no lone surrogate (e.g. from a bad decode)."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                f"{what} {text!r} is not valid UTF-8 text (a lone surrogate at position "
                f"{exc.start}, as a wrongly decoded byte string leaves); clean it first"
            ) from None
    return text


def check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"metric name must be a str, got {type(name).__name__}: {name!r}")
    if not name:
        raise MetranaMetricNameError("metric name must not be empty")
    if _WHITESPACE.search(name):
        fixed = _WHITESPACE.sub("_", name.strip())
        raise MetranaMetricNameError(
            f"metric name {name!r} contains whitespace; use {fixed!r} instead"
        )
    try:
        return check_text(name, "metric name")
    except ValueError as exc:
        raise MetranaMetricNameError(str(exc)) from None


def resolve_scale(scale: object) -> str:
    if scale is None:
        return "ML_STEP"
    if isinstance(scale, StandardMetricScale):
        return scale.value
    if isinstance(scale, str) and scale in _SCALES:
        return _SCALES[scale]
    raise ValueError(
        f"scale {scale!r} is not one of {', '.join(s.value for s in StandardMetricScale)}"
    )


def label_tuple(labels: Mapping[str, str] | None, evaluation: bool) -> tuple[tuple[str, str], ...]:
    """Sorted label pairs; ``evaluation=True`` adds evaluation=true unless already set."""
    if labels is None:
        return (("evaluation", "true"),) if evaluation else ()
    if not isinstance(labels, Mapping):
        raise TypeError(f"labels must be a dict of str to str, got {type(labels).__name__}")
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"labels must map str to str; got {key!r}: {value!r} "
                f"({type(key).__name__}: {type(value).__name__}); convert values with str()"
            )
        check_text(key, "label key")
        check_text(value, f"label {key!r} value")
    if evaluation and "evaluation" not in labels:
        labels = {**labels, "evaluation": "true"}
    return tuple(sorted(labels.items()))


def coerce_value(value: Any, name: str) -> float:
    """A metric value as float: int, float, bool, numpy/torch scalars. NaN and ±inf are fine."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool:
        try:
            return float(value)
        except OverflowError:
            raise TypeError(f"value for {name!r} is too large for a float64: {value}") from None
    if value is None or isinstance(value, (str, bytes, Mapping, list, tuple, set)):
        raise TypeError(
            f"value for {name!r} must be a number (int, float, bool, numpy or torch scalar), "
            f"got {kind.__name__}: {value!r:.80}"
        )
    shape = getattr(value, "shape", None)
    if shape is not None and tuple(shape) not in ((), (1,)):
        raise TypeError(
            f"value for {name!r} is an array of shape {tuple(shape)}; log a scalar "
            "(e.g. .item() or .mean().item())"
        )
    if shape is not None and tuple(shape) == (1,) and callable(getattr(value, "item", None)):
        return coerce_value(value.item(), name)  # float() of a 1-element array is deprecated
    if getattr(kind, "__float__", None) is None:
        raise TypeError(f"value for {name!r} must be a number, got {kind.__name__}")
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value for {name!r} cannot be read as a number: {exc}") from None


def check_int(value: Any, what: str) -> int:
    """An integer in [0, 2**63-1] (int or numpy integer, not bool): what the service stores."""
    if type(value) is int and 0 <= value <= MAX_STEP:
        return value
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an int, got bool")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an int, got {type(value).__name__}: {value!r:.80}") from None
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {number}")
    if number > MAX_STEP:
        raise ValueError(f"{what} must be at most 2**63-1, got {number}")
    return number


def check_timestamp(value: Any) -> int:
    if isinstance(value, float):
        raise TypeError(
            "timestamp is Unix time in integer nanoseconds (e.g. time.time_ns()), got a float"
        )
    try:
        return check_int(value, "timestamp")
    except ValueError:
        raise ValueError(
            f"timestamp {value} is outside what int64 nanoseconds hold (1970 to 2262); it must be "
            "Unix time in integer nanoseconds, e.g. time.time_ns()"
        ) from None

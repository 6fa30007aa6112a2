"""Series identity and the cheap call-site checks behind ``log()``.

Everything here runs in the caller's thread, so the common case (a known metric name, a
float value) must be a couple of dict lookups and type checks; the slow paths raise errors a
user can act on.
"""

from __future__ import annotations

import operator
import re
import threading
from collections.abc import Mapping
from typing import Any

import attrs

from ._enums import StandardMetricScale
from ._exceptions import MetranaMetricNameError
from ._orchestration import WRITER_LABEL
from ._values import KIND_NAMES

__all__ = [
    "MAX_STEP",
    "PLAUSIBLE_NS",
    "SeriesKey",
    "SeriesTable",
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
    :class:`SeriesTable`.
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
    # Position in the session's SeriesTable; inbox items carry this int, not the key (see
    # metrana._items for why).
    index: int = -1
    # The value kind (metrana._values: SCALAR, HISTOGRAM, SCATTER, SCATTER3D) and, for a
    # scatter, its axis titles as (("x_title", "..."), ...): fixed at the series' first call.
    kind: int = 0
    meta: tuple[tuple[str, str], ...] = ()

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


class SeriesTable:
    """Every series one session logs to, numbered: the owner of series identity.

    ``keys[i]`` is the series an inbox item's index ``i`` names; the engine reads it (the
    table is only ever appended to, before the item that names the new index is queued).
    Lookups on the ``log()`` path are plain dicts, exposed as attributes so the hot path is one
    dict access: ``plain_index`` (name → index, for the default scale, no labels, not
    evaluation), ``by_name`` / ``eval_by_name`` (name → key), ``other`` (other cacheable calls).
    Creating a series takes a lock: two threads using a new name at once get one series (one
    step counter), not two that collide on the server.
    """

    def __init__(self, rank_label: tuple[str, str] | None = None) -> None:
        self.keys: list[SeriesKey] = []
        self.plain_index: dict[Any, int] = {}
        self.by_name: dict[str, SeriesKey] = {}
        self.eval_by_name: dict[str, SeriesKey] = {}
        self.other: dict[tuple[Any, ...], SeriesKey] = {}
        self._interned: dict[tuple[Any, ...], SeriesKey] = {}
        # Each metric name's value kind: one for the run's lifetime (scalar unless a
        # log_histogram/log_scatter call made it something else first).
        self.kind_of: dict[str, int] = {}
        # Histogram and scatter series by (name, kind, scale, evaluation), for calls without
        # labels; kept apart from the scalar caches so log() never finds one.
        self.valued_keys: dict[tuple[Any, ...], SeriesKey] = {}
        self._lock = threading.Lock()
        # In a distributed job (see metrana._distributed): this process's rank, as a label.
        self._rank_label = rank_label

    def __len__(self) -> int:
        return len(self.keys)

    def _intern(self, key: SeriesKey) -> SeriesKey:
        """The one SeriesKey object of this identity, numbered; a name keeps its first kind."""
        with self._lock:
            kind = self.kind_of.setdefault(key.name, key.kind)
            if kind != key.kind:
                raise TypeError(_kind_message(key.name, kind, key.kind))
            known = self._interned.get(key.identity)
            if known is not None:
                if key.meta and known.meta != key.meta:  # none given: the series' own
                    raise ValueError(
                        f"{key.name!r} was first logged with axis titles {dict(known.meta)}; a "
                        f"series keeps its titles, got {dict(key.meta)}")
                return known
            key.index = len(self.keys)
            self.keys.append(key)  # before it can be queued: the engine looks it up by index
            self._interned[key.identity] = key
            return key

    def labels(self, labels: Any, evaluation: bool) -> tuple[tuple[str, str], ...]:
        """A series' labels, with the rank label of a distributed job unless one is given."""
        pairs = label_tuple(labels, evaluation)
        if self._rank_label and not any(key == "rank" for key, _ in pairs):
            pairs = tuple(sorted((*pairs, self._rank_label)))
        return pairs

    def standard(self, name: Any, scale: Any, labels: Any, evaluation: bool) -> SeriesKey:
        """The series of a ``log()`` call: validated, created if new, cached when cacheable."""
        check_name(name)
        key = self._intern(SeriesKey(False, name, resolve_scale(scale),
                                     self.labels(labels, evaluation)))
        if labels is None:
            if scale is None:
                (self.eval_by_name if evaluation else self.by_name)[name] = key
                if not evaluation:
                    self.plain_index[name] = key.index
            else:
                self.other[(name, scale, evaluation)] = key
        return key

    def distributed(self, name: Any, scale: Any, labels: Any, evaluation: bool,
                    writer: str) -> SeriesKey:
        """The series of a ``log_distributed`` call: this writer's own series of the metric,
        labelled ``writer=<logger_id>`` instead of the rank (the server merges the writers)."""
        cache_key = ("distributed", name, scale, evaluation, writer)  # a forked child: its own
        key = self.other.get(cache_key) if labels is None else None
        if key is None:
            check_name(name)
            pairs = label_tuple(labels, evaluation)
            if any(k == WRITER_LABEL for k, _ in pairs):
                raise ValueError(
                    f"log_distributed({name!r}): the label {WRITER_LABEL!r} is set by metrana "
                    "(this process's logger_id, init(logger_id=...)); name yours otherwise")
            key = self._intern(SeriesKey(False, name, resolve_scale(scale),
                                         tuple(sorted((*pairs, (WRITER_LABEL, writer))))))
            if labels is None:
                self.other[cache_key] = key
        return key

    def valued(self, name: Any, kind: int, scale: Any, labels: Any, evaluation: bool,
               meta: tuple[tuple[str, str], ...] = ()) -> SeriesKey:
        """The series of a ``log_histogram``/``log_scatter*`` call (a standard series whose
        points are histograms or clouds), created if new."""
        cache_key = (name, kind, scale, evaluation, meta)
        key = self.valued_keys.get(cache_key) if labels is None else None
        if key is None:
            check_name(name)
            key = self._intern(SeriesKey(False, name, resolve_scale(scale),
                                         self.labels(labels, evaluation), kind=kind, meta=meta))
            if labels is None:
                self.valued_keys[cache_key] = key
        return key

    def rl(self, name: Any, scale: str, env_id: Any, episode: int | None, labels: Any,
           evaluation: bool) -> SeriesKey:
        """The series of an RL call: (name, scale, env_id, episode, labels)."""
        cache_key = (name, scale, env_id, episode, evaluation)
        cacheable = labels is None and type(name) is str and (env_id is None or type(env_id) is str)
        key = self.other.get(cache_key) if cacheable else None
        if key is None:
            check_name(name)
            if env_id is None:
                env = ""
            elif isinstance(env_id, str):
                env = check_text(env_id, "env_id")
            elif isinstance(env_id, int) and not isinstance(env_id, bool):
                env = str(env_id)
            else:
                raise TypeError(f"env_id must be a str (or int), got {type(env_id).__name__}")
            key = self._intern(
                SeriesKey(True, name, scale, self.labels(labels, evaluation), env, episode))
            if cacheable:
                self.other[cache_key] = key
        return key



def _kind_message(name: str, first: int, now: int) -> str:
    return (f"metric {name!r} holds {KIND_NAMES[first]} values in this run; it cannot also "
            f"take {KIND_NAMES[now]} values. A metric keeps one kind: log these under another "
            "name")

"""From a validated ``UpdateRunsRequest`` to what the store writes: series and point columns.

Everything the store cannot hold faithfully is refused here, before any write, as an
:class:`Unprocessable` (HTTP 422) naming the path of the offending value — a step past 2**63-1,
a timestamp outside int64 nanoseconds, a part of the schema this server does not store — so a
client error is never a 500 and a request is stored whole or not at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .columnar import PointColumns
from .errors import Unprocessable
from .point_arrays import PointArrays

__all__ = ["INT64_MAX", "IncomingSeries", "RunKey", "parse_update", "signed_session"]

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
RELATIVE = 1  # ORDERING_MODE_RELATIVE_ORDERED: steps count from 0 in each session
ORDERING_NAMES = {
    0: "ORDERING_MODE_UNDEFINED",
    1: "ORDERING_MODE_RELATIVE_ORDERED",
    2: "ORDERING_MODE_ABSOLUTE_UNORDERED",
    3: "ORDERING_MODE_ABSOLUTE_ORDERED",
}
# Parts of RunUpdate that are valid protobuf but that this server does not store. Accepting and
# dropping them would lose data silently, so they are refused with 422.
_UNSUPPORTED = (
    "env_attr_updates",
    "series_declarations",
    "streaming_series",
    "streaming_rl_series",
)


@attrs.frozen
class RunKey:
    workspace: str
    project: str
    run_name: str

    def __str__(self) -> str:
        return f"{self.workspace}/{self.project}/{self.run_name}"


def labels_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@attrs.define
class IncomingSeries:
    """One series' points of a request (all its entries in the request, in order)."""

    kind: str  # "standard" or "rl"
    metric_name: str
    scale: str
    labels: str  # canonical JSON
    environment_id: str
    episode: int | None
    ordering: int
    points: PointArrays
    path: str  # where it is in the request, for error messages

    @property
    def identity(self) -> tuple[Any, ...]:
        # has_episode as 0/1: a BIGINT column on PostgreSQL, which does not compare it to a bool.
        return (self.kind, self.metric_name, self.scale, self.labels, self.environment_id,
                int(self.episode is not None), self.episode or 0)

    @property
    def relative(self) -> bool:
        return self.ordering == RELATIVE


def signed_session(session_id: int) -> int:
    """The uint64 session id as the int64 a database column holds (same bits)."""
    return session_id - 2**64 if session_id > INT64_MAX else session_id


def _check_range(values: list[int], path: str, what: str, lo: int = INT64_MIN,
                 hi: int = INT64_MAX) -> None:
    if values and (max(values) > hi or min(values) < lo):
        index = next(i for i, v in enumerate(values) if not lo <= v <= hi)
        bounds = "0 to 2**63-1" if lo == 0 else "int64 nanoseconds: 1677-09-21 to 2262-04-11"
        raise Unprocessable(f"{path}.points[{index}].{what}: {values[index]} is outside what this "
                            f"server stores ({bounds})")


def _column_range(values: npt.NDArray[Any], path: str, what: str, hi: int = INT64_MAX) -> None:
    if values.shape[0] and int(values.max()) > hi:
        index = int(np.argmax(values > hi))
        raise Unprocessable(f"{path}.points[{index}].{what}: {int(values[index])} is outside what "
                            "this server stores (0 to 2**63-1)")


def _arrays(points: Any, path: str, rl: bool) -> PointArrays:
    if isinstance(points, PointColumns):
        _column_range(points.steps, path, "minorStep" if rl else "step")
        if rl:
            _column_range(points.majors, path, "majorStep")
        n = len(points)
        # Timestamps the fast path reads are within int64 ns by construction (1678-2261).
        return PointArrays(points.majors.astype(np.int64) if rl else points.steps.astype(np.int64),
                           points.steps.astype(np.int64) if rl else np.zeros(n, np.int64),
                           points.timestamps, points.values, np.zeros(n, np.bool_))
    n = len(points)
    if rl:
        xs = [p.get("major_step", 0) for p in points]
        minors = [p.get("minor_step", 0) for p in points]
        _check_range(xs, path, "majorStep", 0)
        _check_range(minors, path, "minorStep", 0)
    else:
        xs = [p.get("step", 0) for p in points]
        minors = []
        _check_range(xs, path, "step", 0)
    ts = [p.get("timestamp", 0) for p in points]
    _check_range(ts, path, "timestamp")
    raw = [p.get("float_value") for p in points]
    missing = np.fromiter((v is None for v in raw), np.bool_, n)
    values = np.fromiter((math.nan if v is None else v for v in raw), np.float64, n)
    return PointArrays(
        np.array(xs, dtype=np.int64),
        np.array(minors, dtype=np.int64) if rl else np.zeros(n, np.int64),
        np.array(ts, dtype=np.int64),
        values,
        missing,
    )


def _check_supported(update: dict[str, Any], index: int) -> None:
    for name in _UNSUPPORTED:
        if update.get(name):
            raise Unprocessable(f"runUpdates[{index}].{name} is valid but not stored by this server")
    for kind, batches in (("series", "point_batches"), ("rl_series", "rl_step_batches")):
        for i, series in enumerate(update.get(kind, [])):
            if series.get("float_points") or series.get(batches):
                raise Unprocessable(
                    f"runUpdates[{index}].{kind}[{i}]: floatPoints/{batches} are not stored by "
                    "this server; send points")


def _series(update: dict[str, Any], index: int) -> Iterator[IncomingSeries]:
    for kind, field in (("standard", "series"), ("rl", "rl_series")):
        for i, series in enumerate(update.get(field, [])):
            path = f"runUpdates[{index}].{'rlSeries' if kind == 'rl' else 'series'}[{i}]"
            name = series.get("metric_name", "")
            scale = series.get("scale", "")
            if not name:
                raise Unprocessable(f"{path}.metricName must not be empty")
            if not scale:
                raise Unprocessable(f"{path}.scale must not be empty")
            episode = series.get("episode") if kind == "rl" else None
            if episode is not None and episode > INT64_MAX:
                raise Unprocessable(f"{path}.episode: {episode} is larger than this server stores")
            yield IncomingSeries(
                kind, name, scale, labels_key(series.get("labels", {})),
                series.get("environment_id", "") if kind == "rl" else "", episode,
                int(series.get("ordering", 0)),
                _arrays(series.get("points", []), path, kind == "rl"), path,
            )


@attrs.define
class IncomingRun:
    key: RunKey
    series: list[IncomingSeries]
    attributes: list[dict[str, Any]]
    close: bool


def parse_update(request: dict[str, Any]) -> tuple[int, list[IncomingRun]]:
    """The session id (signed) and, per run, its series (merged by identity) and attributes."""
    session = signed_session(int(request.get("session_id", 0)))
    runs: list[IncomingRun] = []
    for index, update in enumerate(request.get("run_updates", [])):
        _check_supported(update, index)
        key = RunKey(update.get("workspace", ""), update.get("project", ""),
                     update.get("run_name", ""))
        merged: dict[tuple[Any, ...], IncomingSeries] = {}
        for series in _series(update, index):
            same = merged.get((series.identity, series.ordering))
            if same is None:
                merged[(series.identity, series.ordering)] = series
            else:
                same.points = PointArrays.concat([same.points, series.points])
        runs.append(IncomingRun(key, list(merged.values()), update.get("attributes", []),
                                "close_run" in update))
    return session, runs

"""Histogram and scatter updates of a request, checked as strictly as scalar points.

``HistogramSeriesUpdate`` / ``ScatterSeriesUpdate`` (already validated against the protobuf
schema by :mod:`.validate`) become :class:`IncomingValues`: per series, its points as numpy
arrays. Anything the store cannot hold faithfully is an :class:`Unprocessable` (422) naming the
field's path, before any write — so a request is stored whole or not at all, as for scalars.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from .errors import Unprocessable
from .ingest import INT64_MAX, labels_key

__all__ = ["HISTOGRAM", "MAX_BINS", "MAX_SCATTER_POINTS", "SCATTER", "SCATTER3D",
           "IncomingValues", "ValuePoint", "parse_values"]

HISTOGRAM, SCATTER, SCATTER3D = "histogram", "scatter", "scatter3d"
MAX_BINS = 512
MAX_SCATTER_POINTS = 32_768
_MS_LIMIT = INT64_MAX // 1_000_000  # milliseconds whose nanoseconds fit in int64

F64 = npt.NDArray[np.float64]


@attrs.define
class ValuePoint:
    """One step's histogram (``edges``, ``counts`` xor ``densities``, ``stats`` or None) or
    cloud (``xs``, ``ys``, ``zs`` or None)."""

    step: int
    t: int  # ns
    edges: F64 | None = None
    counts: npt.NDArray[np.int64] | None = None
    densities: F64 | None = None
    stats: tuple[float, float, float, float] | None = None
    xs: F64 | None = None
    ys: F64 | None = None
    zs: F64 | None = None


@attrs.define
class IncomingValues:
    kind: str  # HISTOGRAM, SCATTER or SCATTER3D
    metric_name: str
    scale: str
    labels: str  # canonical JSON
    meta: str  # canonical JSON: a scatter's axis titles
    points: list[ValuePoint]
    path: str

    @property
    def identity(self) -> tuple[str, str, str]:
        return (self.metric_name, self.scale, self.labels)


def _finite(values: list[float], path: str) -> F64:
    array = np.array(values, dtype=np.float64)
    if array.size and not np.all(np.isfinite(array)):
        index = int(np.argmax(~np.isfinite(array)))
        raise Unprocessable(f"{path}[{index}]: {array[index]} is not finite")
    return array


def _head(point: dict[str, Any], path: str, now: int) -> tuple[int, int]:
    step = int(point.get("step", 0))
    if step > INT64_MAX:
        raise Unprocessable(f"{path}.step: {step} is outside what this server stores "
                            "(0 to 2**63-1)")
    ms = point.get("timestamp_millis")
    if ms is None:
        return step, now
    if not -_MS_LIMIT <= ms <= _MS_LIMIT:
        raise Unprocessable(f"{path}.timestampMillis: {ms} is outside what this server stores "
                            "(int64 nanoseconds: 1677-09-21 to 2262-04-11)")
    return step, int(ms) * 1_000_000


def _histogram(point: dict[str, Any], path: str, now: int) -> ValuePoint:
    step, t = _head(point, path, now)
    edges = _finite(point.get("bin_edges", []), f"{path}.binEdges")
    counts, densities = point.get("counts", []), point.get("densities", [])
    if bool(counts) == bool(densities):
        raise Unprocessable(f"{path}: exactly one of counts or densities must be given")
    bins = len(counts or densities)
    if not 1 <= bins <= MAX_BINS:
        raise Unprocessable(f"{path}.{'counts' if counts else 'densities'}: {bins} bins; this "
                            f"server stores 1 to {MAX_BINS}")
    if edges.shape[0] != bins + 1:
        raise Unprocessable(f"{path}.binEdges: {edges.shape[0]} edges for {bins} bins; a "
                            "histogram has one edge more than bins")
    if np.any(np.diff(edges) <= 0):
        index = int(np.argmax(np.diff(edges) <= 0)) + 1
        raise Unprocessable(f"{path}.binEdges[{index}]: edges must be strictly increasing")
    value = ValuePoint(step, t, edges)
    if counts:
        if max(counts) > INT64_MAX:
            index = next(i for i, c in enumerate(counts) if c > INT64_MAX)
            raise Unprocessable(f"{path}.counts[{index}]: {counts[index]} is larger than this "
                                "server stores (2**63-1)")
        value.counts = np.array(counts, dtype=np.int64)
    else:
        value.densities = _finite(densities, f"{path}.densities")
        if np.any(value.densities < 0):
            index = int(np.argmax(value.densities < 0))
            raise Unprocessable(f"{path}.densities[{index}]: must be >= 0")
    stats = point.get("stats")
    if stats is not None:
        numbers = tuple(float(stats.get(k, 0.0)) for k in ("min", "max", "sum",
                                                            "sum_of_squares"))
        for name, number in zip(("min", "max", "sum", "sumOfSquares"), numbers, strict=True):
            if not math.isfinite(number):
                raise Unprocessable(f"{path}.stats.{name}: {number} is not finite")
        value.stats = numbers  # type: ignore[assignment]
    return value


def _scatter(point: dict[str, Any], path: str, now: int, three_d: bool) -> ValuePoint:
    step, t = _head(point, path, now)
    xs = _finite(point.get("xs", []), f"{path}.xs")
    ys = _finite(point.get("ys", []), f"{path}.ys")
    zs = _finite(point.get("zs", []), f"{path}.zs")
    if ys.shape[0] != xs.shape[0]:
        raise Unprocessable(f"{path}.ys: {ys.shape[0]} values for {xs.shape[0]} xs; they must "
                            "have equal lengths")
    if three_d and zs.shape[0] != xs.shape[0]:
        raise Unprocessable(f"{path}.zs: {zs.shape[0]} values for {xs.shape[0]} xs; a 3-D "
                            "scatter has equal lengths")
    if not three_d and zs.shape[0]:
        raise Unprocessable(f"{path}.zs: a 2-D scatter (is3d false) has no zs")
    if xs.shape[0] > MAX_SCATTER_POINTS:
        raise Unprocessable(f"{path}.xs: {xs.shape[0]} points; this server stores at most "
                            f"{MAX_SCATTER_POINTS} a step")
    return ValuePoint(step, t, xs=xs, ys=ys, zs=zs if three_d else None)


def _series(update: dict[str, Any], index: int, now: int) -> Iterator[IncomingValues]:
    for field, json_name in (("histogram_series", "histogramSeries"),
                             ("scatter_series", "scatterSeries")):
        for i, series in enumerate(update.get(field, [])):
            path = f"runUpdates[{index}].{json_name}[{i}]"
            name, scale = series.get("metric_name", ""), series.get("scale", "")
            if not name:
                raise Unprocessable(f"{path}.metricName must not be empty")
            if not scale:
                raise Unprocessable(f"{path}.scale must not be empty")
            if field == "histogram_series":
                kind, meta = HISTOGRAM, {}
                points = [_histogram(p, f"{path}.points[{j}]", now)
                          for j, p in enumerate(series.get("points", []))]
            else:
                three_d = bool(series.get("is_3d", False))
                kind, meta = (SCATTER3D if three_d else SCATTER), series.get("metadata_labels", {})
                points = [_scatter(p, f"{path}.points[{j}]", now, three_d)
                          for j, p in enumerate(series.get("points", []))]
            yield IncomingValues(kind, name, scale, labels_key(series.get("labels", {})),
                                 labels_key(meta), points, path)


def parse_values(update: dict[str, Any], index: int) -> list[IncomingValues]:
    """A run update's histogram and scatter series, checked; one entry per series (its
    pieces in one request joined, in request order: a later point of a step wins)."""
    now = time.time_ns()
    merged: dict[tuple[str, str, str], IncomingValues] = {}
    for series in _series(update, index, now):
        same = merged.get(series.identity)
        if same is None:
            merged[series.identity] = series
        elif same.kind != series.kind:
            raise Unprocessable(f"{series.path}: metric {series.metric_name!r} is sent as "
                                f"{same.kind} and {series.kind} in one request; a metric keeps "
                                "one kind")
        else:
            same.points.extend(series.points)
    return list(merged.values())

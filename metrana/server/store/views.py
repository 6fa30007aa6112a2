"""Rows and point arrays as the read API answers them: JSON (bytes), or JSON with raw columns.

The one place that decides how a run, a series, a point and a page of runs look, and the one
spelling of non-finite floats: JSON has no NaN or ±inf, so they are the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"`` (:func:`metrana._wire.json_number`, the protobuf JSON
mapping the client writes too). Where a string could be mistaken for one (a sort key, an
attribute value), a non-finite float is tagged instead: ``{"float": "Infinity"}``.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs
import numpy as np
import orjson

from ..._wire import json_number, number_from_json
from ..point_arrays import PointArrays
from .groups import AGGREGATIONS, BAND_KINDS, BandKind, RunBuckets, bucket_grid, column, group_stats

__all__ = ["Binary", "Buffers", "RunRow", "columns_binary", "columns_json",
           "compact_raw", "dumps", "encoded", "group_label", "group_order", "jsonable", "point_dicts",
           "points_page", "project_overview", "run_activity", "run_detail", "run_groups",
           "run_summary", "runs_page", "series_json", "series_label",
           "series_listing", "spelt", "spelt_buckets", "spelt_column", "summary_columns",
           "summary_value", "tagged", "untagged"]


# ------------------------------------------------------------------- non-finite floats


def spelt(value: Any) -> Any:
    """A value as JSON carries it: NaN and ±inf spelt as strings, anything else as it is."""
    if type(value) is float and value - value != 0.0:
        return json_number(value)
    return value


def spelt_column(column: list[Any]) -> list[Any]:
    """A list of numbers (and None) with its non-finite floats spelt; the same list, not a
    copy, when it has none (the common case, checked without building anything)."""
    try:  # numpy checks a column of numbers (None as NaN) 30x faster than a Python loop
        if np.isfinite(np.array(column, dtype=np.float64)).all():
            return column
    except (TypeError, ValueError, OverflowError):  # not numbers only: ask each value
        pass
    if not any(type(v) is float and v - v != 0.0 for v in column):
        return column
    return [spelt(v) for v in column]


def jsonable(value: Any) -> Any:
    """Dicts and lists with every non-finite float spelt."""
    if type(value) is float:
        return spelt(value)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        if any(isinstance(v, (dict, list)) for v in value):
            return [jsonable(v) for v in value]
        return spelt_column(value)
    return value


def dumps(payload: Any) -> bytes:
    """JSON with NaN/±inf spelt.

    orjson first (a bucket response costs it 0.1 ms, the json module 5); it writes NaN, ±inf
    and None all as ``null``, so a body with a ``null`` in it is made again from a copy with
    every non-finite float spelt (after which ``null`` can only be None). Numpy arrays in a
    payload must be finite: :func:`columns_json` keeps them so.
    """
    fast: bytes = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    if b"null" not in fast:
        return fast
    careful: bytes = orjson.dumps(jsonable(payload), option=orjson.OPT_SERIALIZE_NUMPY)
    return careful


def spelt_buckets(buckets: dict[str, Any]) -> dict[str, Any]:
    """Bucket columns (:mod:`.buckets`) with their non-finite floats spelt, column by column."""
    return {k: spelt_column(v) if isinstance(v, list) else v for k, v in buckets.items()}


def compact_raw(buckets: dict[str, Any], compact: bool) -> dict[str, Any]:
    """Raw buckets (one point each) without min, max, last (the value again) and count (1s),
    and their timestamps as differences (``dt``: the first timestamp, then each one minus
    the one before: a few digits, not 19), when asked: ``{"raw": true, "compact": true, "x",
    "dt", "mean"}``. Twenty runs compared are 80 such series: the timestamps were 45% of
    their bytes."""
    if not compact or not buckets.get("raw"):
        return buckets
    t = np.asarray(buckets["t"], np.int64)
    return {"x": buckets["x"], "dt": np.diff(t, prepend=np.int64(0)).tolist(),
            "mean": buckets["mean"], "raw": True, "compact": True}


def encoded(payload: Any) -> bytes:
    """JSON of a payload whose floats are all spelt already (:func:`spelt_buckets`,
    :func:`spelt`): orjson once, ``null`` can only be None. A chart's buckets are most of what
    the dashboard reads, and have nulls (empty buckets, open ranges): :func:`dumps` would
    encode them twice."""
    out: bytes = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return out


def tagged(value: Any) -> Any:
    """A sort key or an attribute value as JSON can carry it: a non-finite float tagged,
    ``{"float": "Infinity"}``, so that a string "Infinity" stays a string. (NaN is never a sort
    key: the store keeps it as NULL.)"""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": json_number(value)}
    return value


def untagged(value: Any) -> Any:
    """The inverse of :func:`tagged` for ±inf (what a cursor can hold)."""
    if isinstance(value, dict) and value.get("float") in ("Infinity", "-Infinity"):
        return number_from_json(value["float"])
    return value


# ------------------------------------------------------------------------------- runs


def run_activity(created_ns: int, series_activity: int | None, status: str) -> dict[str, Any]:
    """A run's ``last_activity_ns`` (its newest series' write, or its creation) and
    ``status`` (:mod:`.liveness`): the same in every answer about runs."""
    return {"last_activity_ns": max(int(created_ns), int(series_activity or 0)),
            "status": status}


@attrs.frozen
class RunRow:
    """A run as the store reads it (:func:`.read.find_run`)."""

    id: int
    workspace: str
    project: str
    name: str
    experiment: str | None
    created_ns: int
    closed_ns: int | None
    aggregation_rules: str  # JSON

    def activity(self, series_activity: int | None, status: str) -> dict[str, Any]:
        return run_activity(self.created_ns, series_activity, status)

    def head(self, series_activity: int | None, status: str) -> dict[str, Any]:
        """What every answer about a run says first."""
        return {"workspace": self.workspace, "project": self.project, "run": self.name,
                "experiment": self.experiment, "created_ns": self.created_ns,
                **self.activity(series_activity, status)}


def run_summary(run: RunRow, series_activity: int | None, series_count: int,
                point_count: int, status: str, tags: list[str] | None) -> dict[str, Any]:
    """A run as ``all_runs`` lists it."""
    return {**run.head(series_activity, status), "series_count": int(series_count),
            "point_count": int(point_count), "tags": tags or []}


def run_detail(run: RunRow, attributes: list[tuple[str, str, str]],
               series: list[tuple[Any, ...]], status: str,
               writers: list[tuple[str, int, int]],
               processes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A run with its aggregation rules, attributes (path, kind, JSON value), series
    (:data:`.read.SERIES_COLUMNS` rows), writers (key prefix, first and last write) and the
    processes of the job writing it (:func:`.liveness.processes`)."""
    shown = [series_json(row) for row in series]
    activity = max([0] + [s["last_activity_ns"] for s in shown])
    return {
        **run.head(activity, status),
        "aggregation_rules": json.loads(run.aggregation_rules),
        "attributes": {path: {"kind": kind, "value": json.loads(value)}
                       for path, kind, value in attributes},
        "series": shown,
        "writers": [{"key": prefix, "first_ns": first, "last_ns": last}
                    for prefix, first, last in writers],
        "processes": processes or [],
    }


_SYS_VALUES = {"sys/name": 1, "sys/experiment": 2, "sys/created": 3,
               "sys/status": 7}  # in a runs-page row


def _duration(created_ns: int, closed_ns: int | None, activity: int | None) -> int:
    """From creation to close, or to the last write (``sys/duration``, as filters.py has it)."""
    end = closed_ns if closed_ns is not None else activity if activity is not None else created_ns
    return int(end) - int(created_ns)


def series_label(name: Any, fn: str) -> str:
    """A summary column's name as shown: ``loss.last``; an RL metric's ``last`` says what it
    is (the mean over environments of each one's last 10 episodes)."""
    if getattr(name, "rl", False) and fn == "last":
        return f"{name.metric}.last (mean of last 10 episodes, over environments)"
    return f"{name.metric}.{fn}"


def summary_columns(ids: list[int], resolved: list[tuple[Any, str]],
                    aggregates: dict[int, dict[tuple[str, str, str], tuple[Any, ...]]],
                    rl_values: dict[int, list[Any]]) -> dict[int, list[Any]]:
    """Each run's summary values, spelt: a standard series' from its aggregates, an RL
    metric's as computed in SQL (:meth:`.filters.Compiler.series_value`)."""
    out: dict[int, list[Any]] = {}
    for run_id in ids:
        mine = aggregates.get(run_id, {})
        rl = iter(rl_values.get(run_id, [None] * len(resolved)))
        row: list[Any] = []
        for name, fn in resolved:
            if name.rl:
                value = next(rl)
                row.append(spelt(int(value) if fn == "count" and value is not None else value))
            else:
                row.append(summary_value(mine.get((name.metric, name.scale, name.labels)), fn))
        out[run_id] = row
    return out


def runs_page(rows: list[tuple[Any, ...]], paths: list[str], summaries: dict[int, list[Any]],
              attributes: dict[int, dict[str, Any]], limit: int,
              total: int | None = None, labels: list[str] | None = None,
              columnar: bool = False) -> bytes:
    """A page of ``runs``: each row of :func:`.read.runs_page` with its attribute values
    (by path) and its summary values; ``next`` is the last row's sort key and id when the
    page is full; ``total`` (when asked) how many runs match; ``labels`` the summary columns'
    names as shown."""
    more = len(rows) == limit
    if columnar:  # a column per field: what parallel coordinates read for thousands of runs
        return _runs_columns(rows, paths, summaries, attributes, total, labels,
                             [tagged(rows[-1][6]), int(rows[-1][0])] if more else None)
    out = []
    for row in rows:
        run_id, name, experiment, created_ns, closed_ns, activity = row[:6]
        values = attributes.get(run_id, {})
        shown = run_activity(created_ns, activity, row[7])
        out.append({
            "name": name, "experiment": experiment, "created_ns": int(created_ns), **shown,
            "duration_ns": _duration(created_ns, closed_ns, activity),
            "attributes": [_duration(created_ns, closed_ns, activity) if p == "sys/duration"
                           else row[_SYS_VALUES[p]] if p in _SYS_VALUES
                           else tagged(values.get(p)) for p in paths],
            "summaries": summaries.get(run_id, []),
        })
    page: dict[str, Any] = {"runs": out,
                            "next": [tagged(rows[-1][6]), int(rows[-1][0])] if more else None}
    return _page_json(page, total, labels)


def _runs_columns(rows: list[tuple[Any, ...]], paths: list[str],
                  summaries: dict[int, list[Any]], attributes: dict[int, dict[str, Any]],
                  total: int | None, labels: list[str] | None, after: Any) -> bytes:
    """:func:`runs_page` as columns, built column by column (10,000 runs: no dict per run,
    no transposing; the project page's parallel coordinates wait for it)."""
    ids = [row[0] for row in rows]
    no_values: dict[str, Any] = {}
    columns: list[list[Any]] = []
    for path in paths:
        if path == "sys/duration":
            columns.append([_duration(row[3], row[4], row[5]) for row in rows])
        elif path.startswith("sys/"):
            at = _SYS_VALUES[path]
            columns.append([row[at] for row in rows])
        else:
            columns.append([tagged(attributes.get(run_id, no_values).get(path))
                            for run_id in ids])
    width = len(labels or [])
    per_run = [summaries.get(run_id, [None] * width) for run_id in ids]
    page: dict[str, Any] = {"runs": {
        "name": [row[1] for row in rows],
        "status": [row[7] for row in rows],
        "attributes": columns,
        "summaries": [list(c) for c in zip(*per_run, strict=True)] or [[] for _ in range(width)],
    }, "next": after}
    return _page_json(page, total, labels)


def _page_json(page: dict[str, Any], total: int | None, labels: list[str] | None) -> bytes:
    if total is not None:
        page["total"] = total
    if labels is not None:
        page["summary_labels"] = labels
    # Spelt and tagged already: orjson straight (the careful path of dumps() would be taken
    # for nothing, a page of runs has many nulls: runs without an experiment or an attribute).
    encoded: bytes = orjson.dumps(page)
    return encoded


def _last_value(value: float | None, kind: int | None) -> float | None:
    """The last point's value from its stored form: ``kind`` 0 a number, 1 NaN, 2 none."""
    if kind == 1:
        return math.nan
    return value if kind == 0 else None


def series_json(row: tuple[Any, ...]) -> dict[str, Any]:
    """A series (a :data:`.read.SERIES_COLUMNS` row): identity, extent, last point, summary."""
    (series_id, kind, metric_name, scale, labels, environment_id, has_episode, episode, ordering,
     point_count, valid_count, x_min, x_max, _minor_max, vmin, vmax, vsum, last_x, last_minor,
     last_t, last_value, last_kind, last_activity) = row
    last = None
    if last_x is not None:
        last = {"step": last_x, "minor_step": last_minor or 0, "timestamp_ns": last_t,
                "value": _last_value(last_value, last_kind)}
    return {
        "id": series_id,
        "kind": kind,
        "metric_name": metric_name,
        "scale": scale,
        "labels": json.loads(labels),
        "environment_id": environment_id,
        "episode": episode if has_episode else None,
        "ordering": ordering,
        "point_count": point_count,
        "first_step": x_min,
        "last_step": x_max,
        "last_point": last,
        "summary": {"count": point_count, "valid": valid_count, "min": vmin, "max": vmax,
                    "mean": (vsum / valid_count) if valid_count and vsum is not None else None,
                    "last": _last_value(last_value, last_kind) if last_x is not None else None},
        "last_activity_ns": last_activity,
    }


def series_listing(rows: list[tuple[Any, ...]], name_of: dict[int, str]) -> bytes:
    """Series (:data:`.read.LISTING_COLUMNS` rows) as ``series`` lists them: their run's name,
    identity, point count, first and last step and last timestamp. (No floats: encoded
    straight.)"""
    encoded: bytes = orjson.dumps({"series": [
        {"run": name_of[int(r[0])], "kind": r[1], "metric": r[2], "scale": r[3],
         "labels": json.loads(r[4]), "environment": r[5] if r[1] == "rl" else None,
         "episode": int(r[7]) if r[6] else None, "count": int(r[8]),
         "first_step": None if r[9] is None else int(r[9]),
         "last_step": None if r[10] is None else int(r[10]),
         "last_timestamp_ns": None if r[11] is None else int(r[11])}
        for r in rows]})
    return encoded


def summary_value(row: tuple[Any, ...] | None, fn: str) -> float | int | str | None:
    """One summary (``last``, ``min``, ``max``, ``mean``, ``count``) of a series from its
    aggregates (:data:`.read.SUMMARY_COLUMNS`), spelt."""
    if row is None:
        return None
    count, vmin, vmax, vsum, valid, last_value, last_kind = row
    value: float | int | None
    if fn == "count":
        value = int(count)
    elif fn == "min":
        value = vmin if vmin is None else float(vmin)
    elif fn == "max":
        value = vmax if vmax is None else float(vmax)
    elif fn == "mean":
        value = float(vsum) / int(valid) if valid and vsum is not None else None
    else:
        value = float(last_value) if last_kind == 0 and last_value is not None else None
    shown: float | int | str | None = spelt(value)
    return shown


# ----------------------------------------------------------------------------- points


def point_dicts(points: PointArrays) -> list[dict[str, Any]]:
    """Points as objects (``series_points``): step, minor step, timestamp, value (None for a
    point without one)."""
    return [{"step": x, "minor_step": m, "timestamp_ns": t, "value": None if missing else v}
            for x, m, t, v, missing in zip(points.x.tolist(), points.minor.tolist(),
                                            points.t.tolist(), points.v.tolist(),
                                            points.missing.tolist(), strict=True)]


@attrs.frozen
class Binary:
    """An answer that is not JSON: ``<u4 n`` (little-endian), ``n`` bytes of JSON (the answer,
    where each column is ``[offset, count]`` into what follows), then the columns' raw
    little-endian bytes (steps and timestamps int64, values float64, NaN for no value)."""

    body: bytes
    content_type: ClassVar[str] = "application/vnd.metrana.columns"


class Buffers:
    """The raw columns of a binary answer, and where each starts."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset


def columns_binary(points: PointArrays, rl: bool, timestamps: bool, buffers: Buffers
                   ) -> dict[str, Any]:
    """Columns appended to ``buffers`` as raw bytes; each as its [offset, count]. A point
    without a value is NaN. Timestamps only if asked for: they are a third of the bytes."""
    named = [("x", points.x, "<i8"), ("v", np.where(points.missing, np.nan, points.v), "<f8")]
    if timestamps:
        named.append(("t", points.t, "<i8"))
    if rl:
        named.append(("minor", points.minor, "<i8"))
    out: dict[str, Any] = {}
    for name, array, dtype in named:
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        out[name] = [buffers.add(data), points.n]
    return {"binary": out}


def columns_json(points: PointArrays, rl: bool, timestamps: bool) -> dict[str, Any]:
    """Columns as JSON arrays; non-finite and missing values listed apart (orjson would write
    them all as null), by their index."""
    v = points.v
    finite = np.isfinite(v)
    out: dict[str, Any] = {"x": points.x}
    if timestamps:
        out["t"] = points.t
    if rl:
        out["minor"] = points.minor
    if finite.all() and not points.missing.any():
        out["v"] = v
        return out
    odd = np.flatnonzero(~finite | points.missing)
    out["v"] = np.where(finite, v, 0.0)
    out["special"] = [[i, None if points.missing[i] else spelt(float(v[i]))]
                      for i in odd.tolist()]
    return out


def points_page(parts: list[dict[str, Any]], next_cursor: list[int] | None,
                buffers: Buffers | None) -> bytes | Binary:
    """A page of ``points``: JSON, or (with ``buffers``) JSON followed by the raw columns."""
    # Spelt already (columns_json): nothing here may be written as null by mistake.
    header: bytes = orjson.dumps({"series": parts, "next": next_cursor},
                                 option=orjson.OPT_SERIALIZE_NUMPY)
    if buffers is None:
        return header
    return Binary(b"".join([struct.pack("<I", len(header)), header, *buffers.parts]))


# ------------------------------------------------------------------------ projects


def _decoded(kind: str, value: str) -> Any:
    decoded = json.loads(value)
    if kind == "float" and isinstance(decoded, str):
        decoded = float(decoded)
    return tagged(decoded)


def project_overview(workspace: str, project: str, runs: int,
                     paths: list[tuple[str, str, int, int]], samples: dict[str, list[str]],
                     metrics: list[tuple[str, str, str, str, int]]) -> dict[str, Any]:
    """A project as its page starts: its attribute paths (kinds, distinct values, runs having
    each, up to 50 values), its metrics and the band kinds."""
    by_path: dict[str, dict[str, Any]] = {}
    for path, kind, distinct, having in paths:
        entry = by_path.setdefault(path, {"path": path, "kinds": [], "distinct": 0, "runs": 0})
        entry["kinds"].append(kind)
        entry["distinct"] += distinct
        entry["runs"] += having
    for path, entry in by_path.items():
        if path in samples:
            kinds = entry["kinds"]
            entry["values"] = [_decoded(kinds[0] if len(kinds) == 1 else "", v)
                               for v in samples[path]]
    return {
        "workspace": workspace, "project": project, "runs": runs,
        "attributes": list(by_path.values()),
        "metrics": [{"kind": kind, "metric": metric, "scale": scale, "labels": json.loads(labels),
                     "runs": having} for kind, metric, scale, labels, having in metrics],
        "band_kinds": [{"id": b.id, "label": b.label} for b in BAND_KINDS.values()],
    }


def group_label(paths: list[str], key: tuple[Any, ...]) -> str:
    """``config/lr=0.001, config/algo=ppo``: how a group is named (legend, DataFrame)."""
    def shown(value: Any) -> str:
        if value is None:
            return "(none)"
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    return ", ".join(f"{p}={shown(v)}" for p, v in zip(paths, key, strict=True)) or "all runs"


def group_order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Groups sorted by their values: numbers as numbers, then strings, missing last."""
    return tuple((2, "") if v is None else (0, float(v), "") if isinstance(v, (int, float))
                 and not isinstance(v, bool) else (1, 0.0, str(v)) for v in key)


def run_groups(name: Any, paths: list[str], keys: list[tuple[Any, ...]], run_names: list[str],
               buckets: RunBuckets, lo: int, hi: int, n: int, band: BandKind, *, matched: int,
               truncated: bool, per_run: bool, aggregations: Sequence[str] | None = None
               ) -> bytes:
    """Groups of runs on aligned buckets (:mod:`.groups`): the grid, then per group its key,
    runs and, per bucket, its ``count`` of runs and ``aggregations`` (default all of
    :data:`.groups.AGGREGATIONS`: avg, std, stderr, min, max, the band's edges lo and hi, and
    mid, the curve the band is around when it is not the mean). Only the buckets where some
    group has a value are listed. A chart that draws one line per run asks for avg alone:
    about a quarter of the bytes, and no band computed (a bootstrapped one costs most of the
    answer)."""
    wanted = set(AGGREGATIONS if aggregations is None else aggregations)
    members: dict[tuple[Any, ...], list[int]] = {}
    for row, key in enumerate(keys):
        members.setdefault(key, []).append(row)
    ordered = sorted(members, key=group_order)
    width, starts = bucket_grid(lo, hi, n)
    computed = []
    rs = np.random.RandomState(0)  # a bootstrapped band: the same view draws the same band
    for key in ordered:
        rows = members[key]
        mine = RunBuckets(buckets.means[rows])
        stats = group_stats(mine)
        edges = band.edges(stats, mine, rs) if wanted & {"lo", "hi"} else None
        computed.append((key, rows, mine, stats, edges))
    present = np.zeros(n, bool)
    for _, _, _, stats, _ in computed:
        present |= stats.count > 0
    keep = np.flatnonzero(present)
    groups = []
    for key, rows, mine, stats, edges in computed:
        group: dict[str, Any] = {
            "key": {p: tagged(v) for p, v in zip(paths, key, strict=True)},
            "label": group_label(paths, key),
            "runs": [run_names[r] for r in rows],
            "count": stats.count[keep].tolist(),
        }
        arrays = {"avg": stats.avg, "std": stats.std, "stderr": stats.stderr, "min": stats.min,
                  "max": stats.max}
        if edges is not None:
            arrays["lo"], arrays["hi"] = edges
        for aggregation in AGGREGATIONS:
            if aggregation in wanted and aggregation in arrays:
                group[aggregation] = column(arrays[aggregation][keep])
        if "mid" in wanted and band.center is not None:  # the band's curve, when not the mean
            group["mid"] = column(band.center(mine)[keep])
        if per_run:
            group["per_run"] = [column(values[keep]) for values in mine.means]
        groups.append(group)
    return encoded({
        "metric": name.metric, "kind": name.kind, "scale": name.scale,
        "labels": json.loads(name.labels), "group_by": paths, "lo": lo, "hi": hi, "n": n,
        "width": width, "band": {"id": band.id, "label": band.label},
        "x": [starts[i] for i in keep.tolist()], "groups": groups, "runs_matched": matched,
        "runs_used": len(run_names), "truncated": truncated,
    })

"""The read routes ``metrana.query`` uses: ``POST /api/query/<name>`` with a JSON body.

One function, :func:`answer`, serves both ways in: the app calls it for HTTP requests, and
``QueryClient(db=...)`` calls it on a store it opened itself, so a notebook reading a SQLite
file directly gets the same answers (and the same errors) as one asking a server.

- ``runs``: one page of a project's runs, filtered and ordered in SQL (:mod:`.query_filters`),
  with the asked attributes and series summaries; keyset pagination (``next`` is the cursor).
  A non-finite float attribute is ``{"float": "NaN"}`` (JSON has no NaN, and a string "NaN"
  is a string); a non-finite summary is spelt ``"NaN"``, ``"Infinity"``, ``"-Infinity"``.
- ``points``: raw points of (run, series) pairs, standard or RL, as columns: JSON arrays, or
  with ``"encoding": "binary"`` a :class:`Binary` answer (a million points then cost the
  client no parsing at all: its arrays are views of the body); paginated by point count
  (``next`` is the position and last step of the page); ``"timestamps": false`` leaves out the
  timestamps.
- ``series``: every series of some runs (or of all the project's runs), with its identity,
  point count and first and last step, from the per-series aggregates (no point is read):
  what an export lists before reading points, and where a resumed import continues.
- ``buckets``: one series' chart buckets — the dashboard's :meth:`.Store.buckets`.
- ``band``: an RL metric's reduction across environments (min, max, mean, std, count per
  bucket of ``rl_step``) — the dashboard's band, :meth:`.Store.buckets` with ``spread``.

Bad requests raise :class:`.query_filters.QueryError` (HTTP 400), unknown projects and runs
:class:`.errors.NotFound` (404).
"""

from __future__ import annotations

import json
import math
import struct
import time
from typing import Any, ClassVar

import attrs
import numpy as np
import orjson

from .._wire import json_number
from .database import Tx
from .errors import NotFound
from .query_filters import FUNCTIONS, Compiler, QueryError, SeriesKey, after_cursor, parse_series
from .store import Store, run_status

__all__ = ["MAX_PAGE_POINTS", "MAX_PAGE_RUNS", "Binary", "QueryError", "answer"]

MAX_PAGE_RUNS = 1000
MAX_PAGE_POINTS = 1_000_000
MAX_COLUMNS = 1000
MAX_BUCKETS = 10_000
_SUMMARY_COLUMNS = ("point_count", "vmin", "vmax", "vsum", "valid_count", "last_value",
                    "last_kind")


@attrs.frozen
class Binary:
    """An answer that is not JSON: ``<u4 n`` (little-endian), ``n`` bytes of JSON (the answer,
    where each column is ``[offset, count]`` into what follows), then the columns' raw
    little-endian bytes (steps and timestamps int64, values float64, NaN for no value)."""

    body: bytes
    content_type: ClassVar[str] = "application/vnd.metrana.columns"


def answer(store: Store, name: str, body: Any) -> Any:
    """The answer to ``POST /api/query/<name>``: JSON-able data, or bytes already encoded."""
    if not isinstance(body, dict):
        raise QueryError("the body is a JSON object")
    route = _ROUTES.get(name)
    if route is None:
        raise NotFound(f"no query route {name!r}; one of {', '.join(_ROUTES)}")
    return route(store, body)


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise QueryError(f"{name!r} must be a non-empty string")
    return value


def _int(body: dict[str, Any], name: str, default: int | None, low: int, high: int
         ) -> int | None:
    value = body.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise QueryError(f"{name!r} must be an integer from {low} to {high}, got {value!r:.40}")
    return value


def _project_id(tx: Tx, workspace: str, project: str) -> int:
    row = tx.one("SELECT id FROM projects WHERE workspace = ? AND project = ?",
                 (workspace, project))
    if row is None:
        raise NotFound(f"project {workspace}/{project} does not exist")
    return int(row[0])


# ------------------------------------------------------------------------------------ runs


def _runs(store: Store, body: dict[str, Any]) -> bytes:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    limit = _int(body, "limit", MAX_PAGE_RUNS, 1, MAX_PAGE_RUNS)
    assert limit is not None
    paths = body.get("attributes") or []
    if not isinstance(paths, list) or len(paths) > MAX_COLUMNS:
        raise QueryError(f"'attributes' is a list of at most {MAX_COLUMNS} paths")
    summaries = body.get("summaries") or []
    if not isinstance(summaries, list) or len(summaries) > MAX_COLUMNS:
        raise QueryError(f"'summaries' is a list of at most {MAX_COLUMNS} "
                         "{\"series\": ..., \"fn\": ...}")
    cursor = _cursor(body.get("cursor"))
    now = time.time_ns()
    with store.db.read() as tx:
        project_id = _project_id(tx, workspace, project)
        compiler = Compiler(tx, project_id, f"{workspace}/{project}")
        for path in paths:
            compiler.attribute_kinds(path)
        columns: list[tuple[SeriesKey, str]] = []
        for item in summaries:
            if not isinstance(item, dict) or item.get("fn") not in FUNCTIONS:
                raise QueryError(f"a summary column is {{\"series\": ..., \"fn\": one of "
                                 f"{', '.join(FUNCTIONS)}}}, got {item!r:.80}")
            key = parse_series(item.get("series"), "summary column")
            compiler.check_series(key)
            columns.append((key, item["fn"]))
        where = compiler.condition(body["filter"]) if body.get("filter") is not None else None
        key_sql, descending = compiler.order_key(body.get("order_by"))
        sql = ("SELECT runs.id, runs.run_name, runs.experiment, runs.created_ns, runs.closed_ns, "
               "(SELECT MAX(s.last_activity_ns) FROM series s WHERE s.run_id = runs.id), "
               f"{key_sql.sql} AS sort_key FROM runs WHERE runs.project_id = ?")
        args: list[Any] = [*key_sql.args, project_id]
        if where is not None:
            sql += f" AND {where.sql}"
            args += where.args
        if cursor is not None:
            after = after_cursor(key_sql, descending, cursor)
            sql += f" AND {after.sql}"
            args += after.args
        sql += (f" ORDER BY sort_key {'DESC' if descending else 'ASC'} NULLS LAST, runs.id "
                "LIMIT ?")
        rows = tx.all(sql, (*args, limit))
        ids = [int(row[0]) for row in rows]
        attributes = _attributes(tx, ids, [p for p in paths if not p.startswith("sys/")])
        series = _summaries(tx, ids, {key.metric for key, _ in columns})
    keys = [((key.metric, key.scale, key.labels), fn) for key, fn in columns]
    out = []
    for row in rows:
        run_id, name, experiment, created_ns, closed_ns, activity = row[:6]
        last_activity = max(int(created_ns), int(activity or 0))
        values = attributes.get(run_id, {})
        mine = series.get(run_id, {})
        out.append({
            "name": name, "experiment": experiment, "created_ns": int(created_ns),
            "last_activity_ns": last_activity,
            "status": run_status(closed_ns, last_activity, now),
            "attributes": [_sys_value(p, row) if p.startswith("sys/")
                           else _tagged(values.get(p)) for p in paths],
            "summaries": [_spelt(_summary(mine.get(key), fn)) for key, fn in keys],
        })
    more = len(rows) == limit
    answer = {"runs": out, "next": [_tagged(rows[-1][6]), int(rows[-1][0])] if more
              else None}
    # Encoded here: the app's encoder takes a slow path for any null (it spells NaN), and a
    # page of runs has many (runs without an experiment, an attribute or a series).
    return orjson.dumps(answer)


def _spelt(value: Any) -> Any:
    """NaN and ±inf as the app spells them ("NaN", "Infinity", "-Infinity"): JSON has none."""
    if type(value) is float and not math.isfinite(value):
        return json_number(value)
    return value


def _tagged(value: Any) -> Any:
    """A sort key or an attribute value as JSON can carry it: a non-finite float tagged,
    ``{"float": "Infinity"}``, so that a string "Infinity" stays a string. (NaN is never a sort
    key: the store keeps it as NULL.)"""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": json_number(value)}
    return value


def _cursor(value: Any) -> tuple[Any, int] | None:
    """The ``next`` of a previous page, checked, with ±inf restored."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or isinstance(value[1], bool) \
            or not isinstance(value[1], int):
        raise QueryError("'cursor' is the 'next' of the previous page, unchanged")
    key = value[0]
    if isinstance(key, dict) and key.get("float") in ("Infinity", "-Infinity"):
        key = float(key["float"].replace("Infinity", "inf"))
    elif not isinstance(key, (str, int, float, type(None))):
        raise QueryError("'cursor' is the 'next' of the previous page, unchanged")
    return key, value[1]


def _sys_value(path: str, row: tuple[Any, ...]) -> Any:
    return {"sys/name": row[1], "sys/experiment": row[2], "sys/created": row[3]}[path]


def _attributes(tx: Tx, ids: list[int], paths: list[str]) -> dict[int, dict[str, Any]]:
    """Each run's values of ``paths`` (JSON numbers and strings; ``"NaN"`` as a float)."""
    out: dict[int, dict[str, Any]] = {}
    if not ids or not paths:
        return out
    runs, run_args = tx.among("run_id", ids)
    names, path_args = tx.among("path", paths)
    for run_id, path, kind, value in tx.all(
            f"SELECT run_id, path, kind, value FROM attributes WHERE {runs} AND {names}",
            (*run_args, *path_args)):
        decoded = orjson.loads(value)
        if kind == "float" and isinstance(decoded, str):
            decoded = float(decoded)  # "NaN", "Infinity": the app spells them so again
        out.setdefault(int(run_id), {})[path] = decoded
    return out


def _summaries(tx: Tx, ids: list[int], metrics: set[str]
               ) -> dict[int, dict[tuple[str, str, str], tuple[Any, ...]]]:
    """Each run's aggregates of its standard series named ``metrics``, by (metric, scale,
    labels)."""
    out: dict[int, dict[tuple[str, str, str], tuple[Any, ...]]] = {}
    if not ids or not metrics:
        return out
    runs, run_args = tx.among("run_id", ids)
    names, name_args = tx.among("metric_name", sorted(metrics))
    for row in tx.all(f"SELECT run_id, metric_name, scale, labels, {', '.join(_SUMMARY_COLUMNS)} "
                      f"FROM series WHERE kind = 'standard' AND {runs} AND {names}",
                      (*run_args, *name_args)):
        out.setdefault(int(row[0]), {})[(row[1], row[2], row[3])] = row[4:]
    return out


def _summary(row: tuple[Any, ...] | None, fn: str) -> float | int | None:
    if row is None:
        return None
    count, vmin, vmax, vsum, valid, last_value, last_kind = row
    if fn == "count":
        return int(count)
    if fn == "min":
        return vmin if vmin is None else float(vmin)
    if fn == "max":
        return vmax if vmax is None else float(vmax)
    if fn == "mean":
        return float(vsum) / int(valid) if valid and vsum is not None else None
    return float(last_value) if last_kind == 0 and last_value is not None else None


# ---------------------------------------------------------------------------------- points


def _run_ids(tx: Tx, project_id: int, names: set[str], project: str) -> dict[str, int]:
    clause, args = tx.among("run_name", sorted(names))
    found = {str(r[1]): int(r[0]) for r in tx.all(
        f"SELECT id, run_name FROM runs WHERE project_id = ? AND {clause}", (project_id, *args))}
    missing = sorted(names - set(found))
    if missing:
        raise NotFound(f"project {project} has no run {', '.join(map(repr, missing[:10]))}")
    return found


def _points_series(tx: Tx, project_id: int, project: str, items: Any, rl: bool
                   ) -> list[dict[str, Any]]:
    """The series the request names, in its order (RL: each environment and episode's series
    of a metric, in id order): their ids and what the client needs to label them."""
    if not isinstance(items, list) or not items or len(items) > 10_000:
        raise QueryError("'series' is a non-empty list of {\"run\": NAME, \"metric\": NAME}")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("run"), str):
            raise QueryError(f"each of 'series' names a \"run\", got {item!r:.80}")
    runs = _run_ids(tx, project_id, {item["run"] for item in items}, project)
    out: list[dict[str, Any]] = []
    metrics_found: dict[str, bool] = {}
    for position, item in enumerate(items):
        key = parse_series(item, "series")
        run_id = runs[item["run"]]
        if rl:
            rows = tx.all("SELECT id, scale, environment_id, has_episode, episode, labels "
                          "FROM series WHERE run_id = ? AND kind = 'rl' AND metric_name = ? "
                          "ORDER BY id", (run_id, key.metric))
            scale = item.get("scale")
            for sid, s_scale, env, has_episode, episode, labels in rows:
                if scale is not None and s_scale != scale:
                    continue
                out.append({"item": position, "id": int(sid), "environment": env,
                            "episode": int(episode) if has_episode else None,
                            "scale": s_scale, "labels": json.loads(labels)})
                metrics_found[key.metric] = True
        else:
            row = tx.one("SELECT id FROM series WHERE run_id = ? AND kind = 'standard' AND "
                         "metric_name = ? AND scale = ? AND labels = ?",
                         (run_id, key.metric, key.scale, key.labels))
            if row is not None:
                out.append({"item": position, "id": int(row[0])})
                metrics_found[key.describe()] = True
            else:
                metrics_found.setdefault(key.describe(), False)
    if rl:
        for item in items:
            if not metrics_found.get(item["metric"]):
                raise QueryError(f"no run named here has an RL series {item['metric']!r}")
    else:
        unknown = [name for name, found in metrics_found.items() if not found]
        if unknown:
            raise QueryError(f"unknown series {', '.join(unknown)}: none of the runs asked for "
                             "logged it")
    return out


def _points(store: Store, body: dict[str, Any]) -> bytes | Binary:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    limit = _int(body, "limit", MAX_PAGE_POINTS, 1, MAX_PAGE_POINTS)
    assert limit is not None
    rl = body.get("rl", False) is True
    encoding = body.get("encoding", "json")
    if encoding not in ("json", "binary"):
        raise QueryError("'encoding' is \"json\" (arrays of numbers) or \"binary\"")
    timestamps = body.get("timestamps", True) is not False
    cursor = body.get("cursor")
    start, after = 0, None
    if cursor is not None:
        try:
            start, x, minor = (int(v) for v in cursor)
        except (TypeError, ValueError):
            raise QueryError("'cursor' is the 'next' of the previous page, unchanged") from None
        after = (x, minor)
    parts: list[dict[str, Any]] = []
    buffers = _Buffers()
    room = limit
    nxt = None
    with store.db.read() as tx:
        project_id = _project_id(tx, workspace, project)
        listed = _points_series(tx, project_id, f"{workspace}/{project}", body.get("series"), rl)
        for position in range(start, len(listed)):
            meta = listed[position]
            columns = store.points_after(tx, meta["id"], after if position == start else None,
                                         room)
            after = None
            part = {"position": position, **{k: v for k, v in meta.items() if k != "id"}}
            part.update(_columns_binary(columns, rl, timestamps, buffers) if encoding == "binary"
                        else _columns_json(columns, rl, timestamps))
            parts.append(part)
            room -= columns.n
            if room <= 0:
                if columns.n:
                    nxt = [position, int(columns.x[-1]), int(columns.minor[-1])]
                break
    header = orjson.dumps({"series": parts, "next": nxt}, option=orjson.OPT_SERIALIZE_NUMPY)
    if encoding == "json":
        return header
    return Binary(b"".join([struct.pack("<I", len(header)), header, *buffers.parts]))


class _Buffers:
    """The raw columns of a binary answer, and where each starts."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> int:
        offset = self.size
        self.parts.append(data)
        self.size += len(data)
        return offset


def _columns_binary(columns: Any, rl: bool, timestamps: bool, buffers: _Buffers
                    ) -> dict[str, Any]:
    """Columns appended to ``buffers`` as raw bytes; each as its [offset, count]. A point
    without a value is NaN. Timestamps only if asked for: they are a third of the bytes."""
    named = [("x", columns.x, "<i8"), ("v", np.where(columns.missing, np.nan, columns.v), "<f8")]
    if timestamps:
        named.append(("t", columns.t, "<i8"))
    if rl:
        named.append(("minor", columns.minor, "<i8"))
    out: dict[str, Any] = {}
    for name, array, dtype in named:
        data = np.ascontiguousarray(array, dtype=dtype).tobytes()
        out[name] = [buffers.add(data), columns.n]
    return {"binary": out}


def _columns_json(columns: Any, rl: bool, timestamps: bool) -> dict[str, Any]:
    """Columns as JSON arrays; non-finite and missing values listed apart (orjson would write
    them all as null), by their index."""
    v = columns.v
    finite = np.isfinite(v)
    out: dict[str, Any] = {"x": columns.x}
    if timestamps:
        out["t"] = columns.t
    if rl:
        out["minor"] = columns.minor
    if finite.all() and not columns.missing.any():
        out["v"] = v
        return out
    odd = np.flatnonzero(~finite | columns.missing)
    out["v"] = np.where(finite, v, 0.0)
    out["special"] = [[int(i), None if columns.missing[i] else
                       ("NaN" if math.isnan(v[i]) else "Infinity" if v[i] > 0 else "-Infinity")]
                      for i in odd.tolist()]
    return out


# ---------------------------------------------------------------------------------- series


def _series(store: Store, body: dict[str, Any]) -> bytes:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    names = body.get("runs")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_PAGE_RUNS
                              or not all(isinstance(n, str) for n in names)):
        raise QueryError(f"'runs' is a list of at most {MAX_PAGE_RUNS} run names, or null for "
                         "every run of the project")
    with store.db.read() as tx:
        project_id = _project_id(tx, workspace, project)
        if names is None:
            runs = {str(r[1]): int(r[0]) for r in tx.all(
                "SELECT id, run_name FROM runs WHERE project_id = ?", (project_id,))}
        else:
            runs = _run_ids(tx, project_id, set(names), f"{workspace}/{project}") if names else {}
        rows: list[tuple[Any, ...]] = []
        if runs:
            clause, args = tx.among("run_id", sorted(runs.values()))
            rows = tx.all("SELECT run_id, kind, metric_name, scale, labels, environment_id, "
                          "has_episode, episode, point_count, x_min, x_max, last_t FROM series "
                          f"WHERE {clause} ORDER BY run_id, id", args)
    name_of = {run_id: name for name, run_id in runs.items()}
    return orjson.dumps({"series": [
        {"run": name_of[int(r[0])], "kind": r[1], "metric": r[2], "scale": r[3],
         "labels": json.loads(r[4]), "environment": r[5] if r[1] == "rl" else None,
         "episode": int(r[7]) if r[6] else None, "count": int(r[8]),
         "first_step": None if r[9] is None else int(r[9]),
         "last_step": None if r[10] is None else int(r[10]),
         "last_timestamp_ns": None if r[11] is None else int(r[11])}
        for r in rows]})


# --------------------------------------------------------------------------------- buckets


def _one_run(tx: Tx, body: dict[str, Any]) -> tuple[int, str]:
    workspace, project, run = _text(body, "workspace"), _text(body, "project"), _text(body, "run")
    project_id = _project_id(tx, workspace, project)
    return _run_ids(tx, project_id, {run}, f"{workspace}/{project}")[run], run


def _range(body: dict[str, Any]) -> tuple[int, int | None, int | None]:
    n = _int(body, "n", 1000, 1, MAX_BUCKETS)
    assert n is not None
    return (n, _int(body, "start", None, -(2**63), 2**63 - 1),
            _int(body, "end", None, -(2**63), 2**63 - 1))


def _buckets(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    key = parse_series(body.get("series"), "buckets")
    n, start, end = _range(body)
    with store.db.read() as tx:
        run_id, run = _one_run(tx, body)
        row = tx.one("SELECT id FROM series WHERE run_id = ? AND kind = 'standard' AND "
                     "metric_name = ? AND scale = ? AND labels = ?",
                     (run_id, key.metric, key.scale, key.labels))
    if row is None:
        raise QueryError(f"run {run!r} has no series {key.describe()}")
    return {"series_id": int(row[0]), **store.buckets([int(row[0])], n, start, end)}


def _band(store: Store, body: dict[str, Any]) -> dict[str, Any]:
    metric = _text(body, "metric")
    scale = body.get("scale")
    if scale is not None and not isinstance(scale, str):
        raise QueryError("'scale' is a string such as 'EPISODE'")
    evaluation = body.get("evaluation")
    if evaluation is not None and not isinstance(evaluation, bool):
        raise QueryError("'evaluation' is true, false or null")
    n, start, end = _range(body)
    with store.db.read() as tx:
        _one_run(tx, body)
    ids = store.series_ids(body["workspace"], body["project"], body["run"], metric, scale,
                           evaluation)
    if not ids:
        raise QueryError(f"run {body['run']!r} has no RL series {metric!r}")
    return {"metric": metric, "series": len(ids),
            **store.buckets(ids, n, start, end, spread=True)}


_ROUTES = {"runs": _runs, "points": _points, "series": _series, "buckets": _buckets,
           "band": _band}

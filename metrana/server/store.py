"""SQLite storage for the local ingestion server.

Why SQLite in WAL mode: one file a user can copy, readers that never block the writer, and
transactions so a request is stored whole or not at all. Every point is keyed by its series and
step (RL: major and minor step), so a batch the client retries after a lost response is stored
once (``INSERT OR IGNORE``: the first write of a key wins).

All methods are synchronous and thread-safe; the ASGI app calls them from worker threads.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

__all__ = ["Conflict", "NotFound", "Store", "Unprocessable"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    project TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    UNIQUE (workspace, project)
);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL REFERENCES projects (id),
    run_name TEXT NOT NULL,
    experiment TEXT,
    created_ns INTEGER NOT NULL,
    aggregation_rules TEXT NOT NULL,
    UNIQUE (project_id, run_name)
);
CREATE TABLE IF NOT EXISTS attributes (
    run_id INTEGER NOT NULL REFERENCES runs (id),
    path TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, path)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs (id),
    kind TEXT NOT NULL CHECK (kind IN ('standard', 'rl')),
    metric_name TEXT NOT NULL,
    scale TEXT NOT NULL,
    labels TEXT NOT NULL,
    environment_id TEXT NOT NULL,
    has_episode INTEGER NOT NULL,
    episode INTEGER NOT NULL,
    ordering TEXT NOT NULL,
    UNIQUE (run_id, kind, metric_name, scale, labels, environment_id, has_episode, episode)
);
-- value_kind: 0 = floatValue in `value`, 1 = NaN (SQLite stores NaN as NULL), 2 = no value.
CREATE TABLE IF NOT EXISTS points (
    series_id INTEGER NOT NULL REFERENCES series (id),
    step INTEGER NOT NULL,
    minor_step INTEGER NOT NULL,
    timestamp_ns INTEGER,
    value REAL,
    value_kind INTEGER NOT NULL,
    PRIMARY KEY (series_id, step, minor_step)
) WITHOUT ROWID;
"""

_ORDERING_NAMES = {
    0: "ORDERING_MODE_UNDEFINED",
    1: "ORDERING_MODE_RELATIVE_ORDERED",
    2: "ORDERING_MODE_ABSOLUTE_UNORDERED",
    3: "ORDERING_MODE_ABSOLUTE_ORDERED",
}
_AGG_FN_NAMES = {
    0: "AGGREGATION_FN_UNSPECIFIED",
    1: "AGGREGATION_FN_MEAN",
    2: "AGGREGATION_FN_MAX",
    3: "AGGREGATION_FN_SUM",
    4: "AGGREGATION_FN_MIN",
    5: "AGGREGATION_FN_STD_DEV",
    6: "AGGREGATION_FN_COUNT",
}
_MAX_STEP = 2**63 - 1  # SQLite integers are signed 64-bit
# Parts of RunUpdate that are valid protobuf but that this server does not store. Accepting and
# dropping them would lose data silently, so they are refused with 422.
_UNSUPPORTED = (
    "env_attr_updates",
    "histogram_series",
    "scatter_series",
    "series_declarations",
    "streaming_series",
    "streaming_rl_series",
)
_ATTR_KINDS = ("bool_value", "string_value", "float_value", "int_value", "timestamp_value")


class NotFound(LookupError):
    """The request names a run or project that does not exist (HTTP 404)."""


class Conflict(Exception):
    """The run to create already exists (HTTP 409)."""


class Unprocessable(ValueError):
    """Valid protobuf that the local server cannot store faithfully (HTTP 422)."""


@attrs.frozen
class RunKey:
    workspace: str
    project: str
    run_name: str

    def __str__(self) -> str:
        return f"{self.workspace}/{self.project}/{self.run_name}"


def _labels_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _check_step(value: int, what: str) -> int:
    if value > _MAX_STEP:
        raise Unprocessable(f"{what} {value} is larger than the local server stores (2**63-1)")
    return value


class Store:
    """One SQLite database file holding workspaces, projects, runs, series and points."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._conn.executescript(_SCHEMA)
        self._series_ids: dict[tuple[Any, ...], int] = {}
        self._run_ids: dict[RunKey, int] = {}

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # ----------------------------------------------------------------- writes

    def create_run(self, request: dict[str, Any]) -> bool:
        """Store a CreateRunRequest; True if created, raises Conflict if it existed."""
        run = request.get("run") or {}
        key = RunKey(run.get("workspace", ""), run.get("project", ""), run.get("run_name", ""))
        for name, value in (("workspace", key.workspace), ("project", key.project),
                            ("runName", key.run_name)):
            if not value:
                raise Unprocessable(f"run.{name} must not be empty")
        rules = [
            {**rule, "fns": [_AGG_FN_NAMES.get(f, str(f)) for f in rule.get("fns", [])]}
            for rule in request.get("aggregation_rules", [])
        ]
        now = time.time_ns()
        with self._lock, self._transaction():
            row = self._conn.execute(
                "SELECT id FROM projects WHERE workspace = ? AND project = ?",
                (key.workspace, key.project),
            ).fetchone()
            if row is None:
                if not request.get("create_project_if_missing", False):
                    raise NotFound(
                        f"project {key.workspace}/{key.project} does not exist "
                        "(send createProjectIfMissing: true to create it)"
                    )
                project_id = self._conn.execute(
                    "INSERT INTO projects (workspace, project, created_ns) VALUES (?, ?, ?)",
                    (key.workspace, key.project, now),
                ).lastrowid
            else:
                project_id = row[0]
            exists = self._conn.execute(
                "SELECT 1 FROM runs WHERE project_id = ? AND run_name = ?",
                (project_id, key.run_name),
            ).fetchone()
            if exists:
                raise Conflict(f"run {key} already exists")
            self._conn.execute(
                "INSERT INTO runs (project_id, run_name, experiment, created_ns, aggregation_rules)"
                " VALUES (?, ?, ?, ?, ?)",
                (project_id, key.run_name, run.get("experiment"), now, json.dumps(rules)),
            )
        return True

    def update_runs(self, request: dict[str, Any]) -> int:
        """Store an UpdateRunsRequest in one transaction; returns the points newly stored."""
        updates = request.get("run_updates", [])
        for index, update in enumerate(updates):
            for name in _UNSUPPORTED:
                if update.get(name):
                    raise Unprocessable(
                        f"runUpdates[{index}].{name} is valid but not stored by the local server"
                    )
            for series in update.get("series", []):
                if series.get("float_points") or series.get("point_batches"):
                    raise Unprocessable("floatPoints/pointBatches are not stored by the local server")
            for series in update.get("rl_series", []):
                if series.get("float_points") or series.get("rl_step_batches"):
                    raise Unprocessable(
                        "floatPoints/rlStepBatches are not stored by the local server"
                    )
        with self._lock:
            run_ids = [self._run_id(self._run_key(u)) for u in updates]
            rows: list[tuple[Any, ...]] = []
            before = self._conn.total_changes
            with self._transaction():
                for run_id, update in zip(run_ids, updates, strict=True):
                    self._collect_points(run_id, update, rows)
                    for attribute in update.get("attributes", []):
                        self._set_attribute(run_id, attribute)
                self._conn.executemany(
                    "INSERT OR IGNORE INTO points"
                    " (series_id, step, minor_step, timestamp_ns, value, value_kind)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                stored = self._conn.total_changes - before
        return stored

    def _collect_points(self, run_id: int, update: dict[str, Any], rows: list[Any]) -> None:
        for series in update.get("series", []):
            series_id = self._series_id(run_id, "standard", series, "", None)
            points = series.get("points", [])
            batch = [
                (series_id, p.get("step", 0), 0, p.get("timestamp"), v,
                 2 if v is None else (1 if v != v else 0))
                for p in points
                for v in (p.get("float_value"),)
            ]
            if batch and max(row[1] for row in batch) > _MAX_STEP:
                _check_step(max(row[1] for row in batch), "step")
            rows.extend(batch)
        for series in update.get("rl_series", []):
            episode = series.get("episode")
            if episode is not None:
                _check_step(episode, "episode")
            series_id = self._series_id(
                run_id, "rl", series, series.get("environment_id", ""), episode
            )
            batch = [
                (series_id, p.get("major_step", 0), p.get("minor_step", 0), p.get("timestamp"), v,
                 2 if v is None else (1 if v != v else 0))
                for p in series.get("points", [])
                for v in (p.get("float_value"),)
            ]
            if batch:
                _check_step(max(row[1] for row in batch), "majorStep")
                _check_step(max(row[2] for row in batch), "minorStep")
            rows.extend(batch)

    def _series_id(
        self, run_id: int, kind: str, series: dict[str, Any], env: str, episode: int | None
    ) -> int:
        name = series.get("metric_name", "")
        scale = series.get("scale", "")
        if not name:
            raise Unprocessable("series metricName must not be empty")
        if not scale:
            raise Unprocessable(f"series {name!r}: scale must not be empty")
        labels = _labels_key(series.get("labels", {}))
        has_episode = episode is not None
        identity = (run_id, kind, name, scale, labels, env, has_episode, episode or 0)
        cached = self._series_ids.get(identity)
        if cached is not None:
            return cached
        ordering = _ORDERING_NAMES.get(series.get("ordering", 0), str(series.get("ordering")))
        self._conn.execute(
            "INSERT OR IGNORE INTO series (run_id, kind, metric_name, scale, labels,"
            " environment_id, has_episode, episode, ordering) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*identity, ordering),
        )
        series_id = int(
            self._conn.execute(
                "SELECT id FROM series WHERE run_id = ? AND kind = ? AND metric_name = ? AND"
                " scale = ? AND labels = ? AND environment_id = ? AND has_episode = ? AND"
                " episode = ?",
                identity,
            ).fetchone()[0]
        )
        self._series_ids[identity] = series_id
        return series_id

    def _set_attribute(self, run_id: int, attribute: dict[str, Any]) -> None:
        path = attribute.get("path", "")
        if not path:
            raise Unprocessable("attribute path must not be empty")
        for kind in _ATTR_KINDS:
            if kind in attribute:
                value: Any = attribute[kind]
                break
        else:
            if "string_set_value" in attribute:
                kind, value = "string_set_value", sorted(set(attribute["string_set_value"].get("values", [])))
            elif "string_set_delta_value" in attribute:
                delta = attribute["string_set_delta_value"]
                row = self._conn.execute(
                    "SELECT kind, value FROM attributes WHERE run_id = ? AND path = ?",
                    (run_id, path),
                ).fetchone()
                current = set(json.loads(row[1])) if row and row[0] == "string_set_value" else set()
                current |= set(delta.get("added_values", []))
                current -= set(delta.get("removed_values", []))
                kind, value = "string_set_value", sorted(current)
            else:
                raise Unprocessable(f"attribute {path!r} has no value")
        self._conn.execute(
            "INSERT OR REPLACE INTO attributes (run_id, path, kind, value) VALUES (?, ?, ?, ?)",
            (run_id, path, kind.removesuffix("_value"), json.dumps(value)),
        )

    def _run_key(self, update: dict[str, Any]) -> RunKey:
        return RunKey(
            update.get("workspace", ""), update.get("project", ""), update.get("run_name", "")
        )

    def _run_id(self, key: RunKey) -> int:
        cached = self._run_ids.get(key)
        if cached is not None:
            return cached
        row = self._conn.execute(
            "SELECT runs.id FROM runs JOIN projects ON projects.id = runs.project_id"
            " WHERE workspace = ? AND project = ? AND run_name = ?",
            (key.workspace, key.project, key.run_name),
        ).fetchone()
        if row is None:
            raise NotFound(f"run {key} does not exist; create it with POST /v1/runs first")
        self._run_ids[key] = int(row[0])
        return int(row[0])

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    # ------------------------------------------------------------------ reads

    def _reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.row_factory = sqlite3.Row
        return conn

    def list_runs(self) -> list[dict[str, Any]]:
        conn = self._reader()
        try:
            rows = conn.execute(
                "SELECT runs.id, workspace, project, run_name, experiment, runs.created_ns,"
                " (SELECT COUNT(*) FROM series WHERE series.run_id = runs.id) AS series_count,"
                " (SELECT COUNT(*) FROM points JOIN series ON series.id = points.series_id"
                "  WHERE series.run_id = runs.id) AS point_count"
                " FROM runs JOIN projects ON projects.id = runs.project_id ORDER BY runs.id"
            ).fetchall()
        finally:
            conn.close()
        return [
            {
                "workspace": r["workspace"],
                "project": r["project"],
                "run": r["run_name"],
                "experiment": r["experiment"],
                "created_ns": r["created_ns"],
                "series_count": r["series_count"],
                "point_count": r["point_count"],
            }
            for r in rows
        ]

    def get_run(self, workspace: str, project: str, run_name: str) -> dict[str, Any]:
        conn = self._reader()
        try:
            run = conn.execute(
                "SELECT runs.id, experiment, runs.created_ns, aggregation_rules FROM runs"
                " JOIN projects ON projects.id = runs.project_id"
                " WHERE workspace = ? AND project = ? AND run_name = ?",
                (workspace, project, run_name),
            ).fetchone()
            if run is None:
                raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
            attributes = {
                r["path"]: {"kind": r["kind"], "value": json.loads(r["value"])}
                for r in conn.execute(
                    "SELECT path, kind, value FROM attributes WHERE run_id = ? ORDER BY path",
                    (run["id"],),
                )
            }
            series = [_series_dict(conn, r) for r in conn.execute(
                "SELECT * FROM series WHERE run_id = ? ORDER BY id", (run["id"],)
            ).fetchall()]
        finally:
            conn.close()
        return {
            "workspace": workspace,
            "project": project,
            "run": run_name,
            "experiment": run["experiment"],
            "created_ns": run["created_ns"],
            "aggregation_rules": json.loads(run["aggregation_rules"]),
            "attributes": attributes,
            "series": series,
        }

    def get_points(
        self,
        series_id: int,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Points of one series in step order; ``start``/``end`` bound the (major) step."""
        sql = "SELECT step, minor_step, timestamp_ns, value, value_kind FROM points WHERE series_id = ?"
        args: list[Any] = [series_id]
        if start is not None:
            sql += " AND step >= ?"
            args.append(start)
        if end is not None:
            sql += " AND step <= ?"
            args.append(end)
        sql += " ORDER BY step, minor_step"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        conn = self._reader()
        try:
            return [_point_dict(r) for r in conn.execute(sql, args)]
        finally:
            conn.close()

    def iter_export(self, workspace: str, project: str, run_name: str) -> Iterator[dict[str, Any]]:
        """Every point of a run with its series identity, series by series in step order."""
        run = self.get_run(workspace, project, run_name)
        for series in run["series"]:
            identity = {k: series[k] for k in _SERIES_IDENTITY}
            for point in self.get_points(series["id"]):
                yield {**identity, **point}


_SERIES_IDENTITY = ("kind", "metric_name", "scale", "labels", "environment_id", "episode")


def _value(value: float | None, kind: int) -> float | None:
    if kind == 1:
        return math.nan
    return value if kind == 0 else None


def _point_dict(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "step": r["step"],
        "minor_step": r["minor_step"],
        "timestamp_ns": r["timestamp_ns"],
        "value": _value(r["value"], r["value_kind"]),
    }


def _series_dict(conn: sqlite3.Connection, r: sqlite3.Row) -> dict[str, Any]:
    stats = conn.execute(
        "SELECT COUNT(*), MIN(step), MAX(step) FROM points WHERE series_id = ?", (r["id"],)
    ).fetchone()
    last = conn.execute(
        "SELECT step, minor_step, timestamp_ns, value, value_kind FROM points WHERE series_id = ?"
        " ORDER BY step DESC, minor_step DESC LIMIT 1",
        (r["id"],),
    ).fetchone()
    return {
        "id": r["id"],
        "kind": r["kind"],
        "metric_name": r["metric_name"],
        "scale": r["scale"],
        "labels": json.loads(r["labels"]),
        "environment_id": r["environment_id"],
        "episode": r["episode"] if r["has_episode"] else None,
        "ordering": r["ordering"],
        "point_count": stats[0],
        "first_step": stats[1],
        "last_step": stats[2],
        "last_point": _point_dict(last) if last is not None else None,
    }


class _Transaction:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK and forget ids cached during the transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        self._store._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._store._conn.execute("COMMIT")
        else:
            self._store._conn.execute("ROLLBACK")
            # Series rows created in this transaction are gone; so must their cached ids be.
            self._store._series_ids.clear()

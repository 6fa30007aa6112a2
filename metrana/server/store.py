"""The store: runs, series and points on SQLite or PostgreSQL, the same way on both.

What it guarantees, on either database:

- **A request is stored whole or not at all** (one transaction), and what cannot be stored is
  refused before anything is written (:mod:`.ingest`).
- **Idempotent.** A point is identified by its series, its session and its step, so a retried,
  replayed or synced request stores nothing twice — also when two servers receive the same
  request at once: a series' row is locked while its points are written (PostgreSQL), and rows
  are always locked in id order, so two requests cannot deadlock.
- **Session-relative steps** (``ORDERING_MODE_RELATIVE_ORDERED``). Each session numbers a
  series' points from 0; the first time a session writes to a series it gets a *base* one past
  the series' last step, and its points are stored at ``base + step``. A resumed run therefore
  appends, a second process never overwrites the first, and a replay of the same session lands
  on the same points. Manual (absolute) steps are stored as given. Sessions never share an
  identity, so nothing one session logs can make the server drop another's point.
- **No state but the database.** Several servers can share one PostgreSQL database.

Points live in chunks (:mod:`.chunks`); per-series aggregates (count, min, max, sum, last) are
kept up to date on every write, so listing runs and series never scans points.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .._wire import json_number
from .buckets import aggregate, bucket_points, needs_points
from .chunks import (
    BLOCK_POINTS,
    CHUNK_POINTS,
    Blocks,
    Columns,
    decode_blocks,
    decode_columns,
    encode_blocks,
    encode_columns,
)
from .database import Database, Tx, open_database
from .errors import Conflict, NotFound, SchemaError, Unprocessable
from .ingest import INT64_MAX, ORDERING_NAMES, IncomingSeries, RunKey, parse_update
from .schema import ensure_schema

__all__ = ["SERIES_COLUMNS", "Conflict", "NotFound", "SchemaError", "Store", "Unprocessable",
           "run_status", "series_dict"]

MERGE_BELOW = 1024  # a session's last chunk smaller than this takes the next points in
LIVE_WINDOW_NS = 120 * 10**9  # a run that wrote within this is "live"
_ATTR_KINDS = ("bool_value", "string_value", "float_value", "int_value", "timestamp_value")
_AGG_FN_NAMES = {
    0: "AGGREGATION_FN_UNSPECIFIED",
    1: "AGGREGATION_FN_MEAN",
    2: "AGGREGATION_FN_MAX",
    3: "AGGREGATION_FN_SUM",
    4: "AGGREGATION_FN_MIN",
    5: "AGGREGATION_FN_STD_DEV",
    6: "AGGREGATION_FN_COUNT",
}
_SERIES_KEY = ("run_id = ? AND kind = ? AND metric_name = ? AND scale = ? AND labels = ? AND "
               "environment_id = ? AND has_episode = ? AND episode = ?")
SERIES_COLUMNS = ("id, kind, metric_name, scale, labels, environment_id, has_episode, episode, "
                   "ordering, point_count, valid_count, x_min, x_max, minor_max, vmin, vmax, "
                   "vsum, last_x, last_minor, last_t, last_value, last_kind, last_activity_ns")


_CHUNK_COLUMNS = (("series_id", "int8"), ("session_ref", "int8"), ("n", "int8"),
                  ("x_first", "int8"), ("x_last", "int8"), ("t_first", "int8"), ("t_last", "int8"),
                  ("blocks", "bytea"), ("data", "bytea"))
_SESSION_COLUMNS = (("series_id", "int8"), ("session_id", "int8"), ("relative", "int8"),
                    ("base", "int8"))
_AGGREGATE_FIELDS = ("point_count", "valid_count", "x_min", "x_max", "minor_max", "vmin", "vmax",
                     "vsum", "last_x", "last_minor", "last_t", "last_value", "last_kind",
                     "last_activity_ns")


def _nullable(value: float) -> float | None:
    """SQLite stores NaN as NULL anyway; say so explicitly on both databases."""
    return None if value != value else value


def _key_after(x: int, minor: int, last_x: int | None, last_minor: int | None) -> bool:
    return last_x is None or (x, minor) > (last_x, last_minor or 0)


def _strictly_increasing(columns: Columns) -> bool:
    if columns.n < 2:
        return True
    dx = np.diff(columns.x)
    return bool(np.all((dx > 0) | ((dx == 0) & (np.diff(columns.minor) > 0))))


def _unique_sorted(columns: Columns) -> Columns:
    """Points in step order; the first of several equal steps in one request wins."""
    order = np.lexsort((columns.minor, columns.x))  # stable: request order among equals
    columns = columns.take(order)
    keep = np.ones(columns.n, dtype=bool)
    keep[1:] = (np.diff(columns.x) != 0) | (np.diff(columns.minor) != 0)
    return columns.take(keep)


def _not_stored(tx: Tx, session_ref: int, columns: Columns) -> Columns:
    """The points (unique, sorted) this session has not stored yet: a retry, a replay, or a
    gap filled. Only the session's chunks that overlap the request's steps are read."""
    lo, hi = int(columns.x[0]), int(columns.x[-1])
    existing: set[tuple[int, int]] = set()
    for (blob,) in tx.all("SELECT data FROM chunks WHERE session_ref = ? AND x_last >= ? "
                          "AND x_first <= ?", (session_ref, lo, hi)):
        stored = decode_columns(bytes(blob))
        existing.update(zip(stored.x.tolist(), stored.minor.tolist(), strict=True))
    if not existing:
        return columns
    keep = np.fromiter(((x, m) not in existing for x, m in
                        zip(columns.x.tolist(), columns.minor.tolist(), strict=True)),
                       bool, columns.n)
    return columns.take(keep)


@attrs.define
class _Aggregates:
    """A series' aggregates (its row), kept up to date in memory while a request is planned."""

    point_count: int
    valid_count: int
    x_min: int | None
    x_max: int | None
    minor_max: int | None
    vmin: float | None
    vmax: float | None
    vsum: float | None
    last_x: int | None
    last_minor: int | None
    last_t: int | None
    last_value: float | None
    last_kind: int | None
    last_activity_ns: int
    changed: bool = False

    def add(self, columns: Columns, now: int) -> None:
        ok = ~(np.isnan(columns.v) | columns.missing)
        new_valid = int(ok.sum())
        if new_valid:
            values = columns.v[ok]
            low, high = float(values.min()), float(values.max())
            self.vmin = low if self.vmin is None else min(self.vmin, low)
            self.vmax = high if self.vmax is None else max(self.vmax, high)
            # A NULL sum over valid values is NaN (inf + -inf), and stays NaN.
            before = (math.nan if self.vsum is None and self.valid_count
                      else (self.vsum or 0.0))
            with np.errstate(invalid="ignore", over="ignore"):
                self.vsum = _nullable(float(values.sum()) + before)
        self.point_count += columns.n
        self.valid_count += new_valid
        x_lo, x_hi = int(columns.x.min()), int(columns.x.max())
        self.x_min = x_lo if self.x_min is None else min(self.x_min, x_lo)
        self.x_max = x_hi if self.x_max is None else max(self.x_max, x_hi)
        m_hi = int(columns.minor.max())
        self.minor_max = m_hi if self.minor_max is None else max(self.minor_max, m_hi)
        index = int(np.lexsort((columns.minor, columns.x))[-1])
        end_x, end_minor = int(columns.x[index]), int(columns.minor[index])
        if self.last_x is None or (end_x, end_minor) >= (self.last_x, self.last_minor or 0):
            value = float(columns.v[index])
            kind = 2 if columns.missing[index] else (1 if value != value else 0)
            self.last_x, self.last_minor, self.last_t = end_x, end_minor, int(columns.t[index])
            self.last_value, self.last_kind = (None if kind else value), kind
        self.last_activity_ns = now
        self.changed = True

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _AGGREGATE_FIELDS)


@attrs.define(eq=False)
class _Session:
    """A (series, session, relative) row: where its steps start and its last chunk."""

    ref: int | None  # None until inserted
    series_id: int
    relative: bool
    base: int
    last_x: int | None = None
    last_minor: int | None = None
    tail_chunk: int | None = None
    tail_count: int = 0
    changed: bool = False


@attrs.define
class _Write:
    """The points of one series (one session) to store, as they will be chunked."""

    session: _Session
    rl: bool
    tail: Columns | None  # points that top up the session's small last chunk
    parts: list[Columns]  # new chunks


class _Writer:
    """Everything one request writes, planned in memory, then written in a few statements:
    new sessions (one insert), tail chunks (one read, one pipelined update), new chunks (one
    bulk insert: binary COPY on PostgreSQL), sessions and series (one pipelined update each).
    The round trips per request do not grow with its number of series."""

    def __init__(self) -> None:
        self.sessions: list[_Session] = []
        self.writes: list[_Write] = []
        self._seen: set[int] = set()

    def use(self, session: _Session) -> None:
        """A session this request touches (inserted if new, updated if written to)."""
        if id(session) not in self._seen:
            self._seen.add(id(session))
            self.sessions.append(session)

    def plan(self, session: _Session, columns: Columns, rl: bool, *, merge_tail: bool) -> None:
        """Chunk ``columns`` (sorted, new) for ``session``, topping up its tail chunk if
        ``merge_tail`` and it is small."""
        tail = None
        if merge_tail and session.tail_chunk is not None and session.tail_count < MERGE_BELOW:
            room = CHUNK_POINTS - session.tail_count
            tail, columns = columns.take(slice(0, room)), columns.take(slice(room, None))
        parts = [columns.take(slice(start, start + CHUNK_POINTS))
                 for start in range(0, columns.n, CHUNK_POINTS)]
        self.writes.append(_Write(session, rl, tail, parts))
        last = parts[-1] if parts else tail
        assert last is not None
        end_x, end_minor = int(last.x[-1]), int(last.minor[-1])
        if _key_after(end_x, end_minor, session.last_x, session.last_minor):
            session.last_x, session.last_minor = end_x, end_minor
        session.changed = True

    def flush(self, tx: Tx, session_id: int) -> None:
        new = [s for s in self.sessions if s.ref is None]
        ids = tx.insert_ids("sessions", _SESSION_COLUMNS,
                            [(s.series_id, session_id, int(s.relative), s.base) for s in new])
        for s, ref in zip(new, ids, strict=True):
            s.ref = ref
        merging = [w for w in self.writes if w.tail is not None]
        tails: dict[int, Columns] = {}
        if merging:
            clause, args = tx.among("id", [w.session.tail_chunk for w in merging])
            tails = {int(r[0]): decode_columns(bytes(r[1]))
                     for r in tx.all(f"SELECT id, data FROM chunks WHERE {clause}", args)}
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        owners: list[tuple[_Session, int]] = []
        for w in self.writes:
            s = w.session
            assert s.ref is not None
            parts = w.parts
            if w.tail is not None:
                assert s.tail_chunk is not None
                previous = tails.get(s.tail_chunk)
                if previous is None:  # not there (never expected): store the points anew
                    parts = [w.tail, *parts]
                else:
                    merged = Columns.concat([previous, w.tail])
                    updates.append((*_chunk_values(merged, w.rl), s.tail_chunk))
                    s.tail_count = merged.n
            for part in parts:
                inserts.append((s.series_id, s.ref, *_chunk_values(part, w.rl)))
                owners.append((s, part.n))
        tx.many("UPDATE chunks SET n = ?, x_first = ?, x_last = ?, t_first = ?, t_last = ?, "
                "blocks = ?, data = ? WHERE id = ?", updates)
        for (s, count), chunk_id in zip(owners, tx.insert_ids("chunks", _CHUNK_COLUMNS, inserts),
                                        strict=True):
            s.tail_chunk, s.tail_count = chunk_id, count  # the last one written wins
        tx.many("UPDATE sessions SET last_x = ?, last_minor = ?, tail_chunk = ?, tail_count = ? "
                "WHERE id = ?", [(s.last_x, s.last_minor, s.tail_chunk, s.tail_count, s.ref)
                                 for s in self.sessions if s.changed])


def _chunk_values(part: Columns, rl: bool) -> tuple[Any, ...]:
    return (part.n, int(part.x[0]), int(part.x[-1]), int(part.t.min()), int(part.t.max()),
            encode_blocks(Blocks.of_points(part)), encode_columns(part, rl))


def _update_aggregates(tx: Tx, aggregates: dict[int, _Aggregates]) -> None:
    assignments = ", ".join(f"{name} = ?" for name in _AGGREGATE_FIELDS)
    tx.many(f"UPDATE series SET {assignments} WHERE id = ?",
            [(*a.row(), series_id) for series_id, a in sorted(aggregates.items()) if a.changed])


class Store:
    """One database (a SQLite file, or a ``postgresql://`` URL) of runs, series and points.

    Methods are synchronous and thread-safe; the app calls them from worker threads.
    """

    def __init__(self, target: str | Path, *, insert_method: str = "copy") -> None:
        """``insert_method``: how PostgreSQL inserts a request's chunks (``copy``, the default
        and fastest measured; ``executemany``; ``each``). SQLite ignores it."""
        self.db: Database = open_database(target, insert_method=insert_method)
        try:
            ensure_schema(self.db, _migrate_v1)
        except BaseException:
            self.db.close()
            raise
        self.location = self.db.description
        self.path: Path | None = getattr(self.db, "path", None)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writes

    def create_run(self, request: dict[str, Any]) -> None:
        """Store a CreateRunRequest; raises Conflict if the run exists."""
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
        with self.db.write() as tx:
            row = tx.one("SELECT id FROM projects WHERE workspace = ? AND project = ?",
                         (key.workspace, key.project))
            if row is None:
                if not request.get("create_project_if_missing", False):
                    raise NotFound(f"project {key.workspace}/{key.project} does not exist "
                                   "(send createProjectIfMissing: true to create it)")
                tx.run("INSERT INTO projects (workspace, project, created_ns) VALUES (?, ?, ?) "
                       "ON CONFLICT DO NOTHING", (key.workspace, key.project, now))
                row = tx.one("SELECT id FROM projects WHERE workspace = ? AND project = ?",
                             (key.workspace, key.project))
                assert row is not None
            created = tx.one(
                "INSERT INTO runs (project_id, run_name, experiment, created_ns, "
                "aggregation_rules) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
                (row[0], key.run_name, run.get("experiment"), now, json.dumps(rules)))
            if created is None:
                raise Conflict(f"run {key} already exists")

    def update_runs(self, request: dict[str, Any]) -> int:
        """Store an UpdateRunsRequest in one transaction; returns the points newly stored.

        Locks are taken in one order by every request, so two servers writing the same runs
        wait for each other but never deadlock: new series are inserted in identity order,
        series rows locked in id order, attributes written in (run, path) order, runs closed
        in id order.
        """
        session, runs = parse_update(request)
        now = time.time_ns()
        with self.db.write() as tx:
            run_ids = [self._run_id(tx, run.key) for run in runs]
            found = self._series_ids(tx, [(run_id, incoming) for run_id, run
                                          in zip(run_ids, runs, strict=True)
                                          for incoming in run.series])
            stored = self._write_points(tx, session, found, now)
            attributes = [(run_id, attribute) for run_id, run in zip(run_ids, runs, strict=True)
                          for attribute in run.attributes]
            # Stable: several values of one path keep their request order (the last wins).
            attributes.sort(key=lambda item: (item[0], str(item[1].get("path", ""))))
            for run_id, attribute in attributes:
                self._set_attribute(tx, run_id, attribute)
            for run_id in sorted({run_id for run_id, run in zip(run_ids, runs, strict=True)
                                  if run.close}):
                tx.run("UPDATE runs SET closed_ns = ? WHERE id = ?", (now, run_id))
        return stored

    def _run_id(self, tx: Tx, key: RunKey) -> int:
        row = tx.one("SELECT runs.id FROM runs JOIN projects ON projects.id = runs.project_id "
                     "WHERE workspace = ? AND project = ? AND run_name = ?",
                     (key.workspace, key.project, key.run_name))
        if row is None:
            raise NotFound(f"run {key} does not exist; create it with POST /v1/runs first")
        return int(row[0])

    def _series_ids(self, tx: Tx, incoming: list[tuple[int, IncomingSeries]]
                    ) -> list[tuple[int, IncomingSeries]]:
        """Each incoming series with its id (created if new), merged per (series, relative):
        a run named twice in one request, or one series sent in two pieces, is one write.

        New series get their ids in request order (the order a run lists its series in), but
        are inserted in identity order: two servers creating the same new series wait on each
        other's insert in one order, never in a cycle.
        """
        ids: dict[tuple[Any, ...], int] = {}
        ordering: dict[tuple[Any, ...], str] = {}
        for run_id, series in incoming:
            identity = (run_id, *series.identity)
            if identity in ids or identity in ordering:
                continue
            row = tx.one(f"SELECT id FROM series WHERE {_SERIES_KEY}", identity)
            if row is None:
                ordering[identity] = ORDERING_NAMES.get(series.ordering, str(series.ordering))
            else:
                ids[identity] = int(row[0])
        new = dict(zip(ordering, tx.next_ids("series", len(ordering)), strict=True))
        for identity in sorted(new):
            made = tx.run("INSERT INTO series (id, run_id, kind, metric_name, scale, labels, "
                          "environment_id, has_episode, episode, ordering) VALUES "
                          "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                          (new[identity], *identity, ordering[identity]))
            if made:
                ids[identity] = new[identity]
            else:  # another server made it first (we waited for its commit)
                row = tx.one(f"SELECT id FROM series WHERE {_SERIES_KEY}", identity)
                assert row is not None
                ids[identity] = int(row[0])
        merged: dict[tuple[int, bool], tuple[int, IncomingSeries]] = {}
        for run_id, series in incoming:
            key = (run_id, *series.identity)
            series_id = ids[key]
            same = merged.get((series_id, series.relative))
            if same is None:
                merged[(series_id, series.relative)] = (series_id, attrs.evolve(series))
            else:
                same[1].columns = Columns.concat([same[1].columns, series.columns])
        return list(merged.values())

    def _write_points(self, tx: Tx, session_id: int, found: list[tuple[int, IncomingSeries]],
                      now: int) -> int:
        """Plan every series' points in memory (each series' row locked first), then write
        them all at once (:class:`_Writer`)."""
        if not found:
            return 0
        series_ids = sorted({series_id for series_id, _ in found})
        clause, args = tx.among("id", series_ids)
        aggregates = {int(row[0]): _Aggregates(*row[1:]) for row in tx.all(
            f"SELECT id, {', '.join(_AGGREGATE_FIELDS)} FROM series WHERE {clause} "
            "ORDER BY id" + self.db.for_update, args)}
        clause, args = tx.among("series_id", series_ids)
        sessions = {(int(r[1]), bool(r[2])): _Session(int(r[0]), int(r[1]), bool(r[2]), *r[3:])
                    for r in tx.all(
                        "SELECT id, series_id, relative, base, last_x, last_minor, tail_chunk, "
                        f"tail_count FROM sessions WHERE session_id = ? AND {clause}",
                        (session_id, *args))}
        writer = _Writer()
        stored = 0
        # Series in id order; one series' pieces (relative and absolute) in request order.
        for series_id, incoming in sorted(found, key=lambda item: item[0]):
            aggregate = aggregates[series_id]
            rl = incoming.kind == "rl"
            session = sessions.get((series_id, incoming.relative))
            if session is None:
                # A new session of this series: its relative steps go after everything stored.
                prior = aggregate.minor_max if rl else aggregate.x_max
                base = (prior + 1) if incoming.relative and prior is not None else 0
                session = _Session(None, series_id, incoming.relative, base)
                sessions[(series_id, incoming.relative)] = session
            writer.use(session)
            columns = incoming.columns
            if columns.n == 0:
                continue
            base = session.base
            if base:
                shifted = columns.minor if rl else columns.x
                if int(shifted.max()) > INT64_MAX - base:
                    raise Unprocessable(f"{incoming.path}: steps of this session would pass "
                                        f"2**63-1 after the {base:,} points before it")
                if rl:
                    columns = Columns(columns.x, columns.minor + base, columns.t, columns.v,
                                      columns.missing)
                else:
                    columns = Columns(columns.x + base, columns.minor, columns.t, columns.v,
                                      columns.missing)
            appending = (_key_after(int(columns.x[0]), int(columns.minor[0]), session.last_x,
                                    session.last_minor)
                         and _strictly_increasing(columns))
            if not appending:
                columns = _unique_sorted(columns)
                if session.ref is not None:
                    columns = _not_stored(tx, session.ref, columns)
                if columns.n == 0:
                    continue
            writer.plan(session, columns, rl, merge_tail=appending)
            aggregate.add(columns, now)
            stored += columns.n
        writer.flush(tx, session_id)
        _update_aggregates(tx, aggregates)
        return stored

    def _set_attribute(self, tx: Tx, run_id: int, attribute: dict[str, Any]) -> None:
        path = attribute.get("path", "")
        if not path:
            raise Unprocessable("attribute path must not be empty")
        for kind in _ATTR_KINDS:
            if kind in attribute:
                value: Any = attribute[kind]
                break
        else:
            if "string_set_value" in attribute:
                kind = "string_set_value"
                value = sorted(set(attribute["string_set_value"].get("values", [])))
            elif "string_set_delta_value" in attribute:
                delta = attribute["string_set_delta_value"]
                # Lock the attribute's row (made first if missing): two servers applying
                # deltas to one set at once apply both, one after the other.
                tx.run("INSERT INTO attributes (run_id, path, kind, value) VALUES "
                       "(?, ?, 'string_set', '[]') ON CONFLICT DO NOTHING", (run_id, path))
                row = tx.one("SELECT kind, value FROM attributes WHERE run_id = ? AND path = ?"
                             + self.db.for_update, (run_id, path))
                current = set(json.loads(row[1])) if row and row[0] == "string_set" else set()
                current |= set(delta.get("added_values", []))
                current -= set(delta.get("removed_values", []))
                kind, value = "string_set_value", sorted(current)
            else:
                raise Unprocessable(f"attribute {path!r} has no value")
        if isinstance(value, float):
            value = json_number(value)
        tx.run("INSERT INTO attributes (run_id, path, kind, value) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (run_id, path) DO UPDATE SET kind = excluded.kind, "
               "value = excluded.value",
               (run_id, path, kind.removesuffix("_value"), json.dumps(value)))

    # ------------------------------------------------------------------- reads

    def list_runs(self) -> list[dict[str, Any]]:
        """Every run, newest first, with its series and point counts and its status."""
        now = time.time_ns()
        with self.db.read() as tx:
            rows = tx.all(
                "SELECT runs.id, workspace, project, run_name, experiment, runs.created_ns, "
                "runs.closed_ns, COUNT(series.id), COALESCE(SUM(series.point_count), 0), "
                "COALESCE(MAX(series.last_activity_ns), 0) FROM runs "
                "JOIN projects ON projects.id = runs.project_id "
                "LEFT JOIN series ON series.run_id = runs.id "
                "GROUP BY runs.id, workspace, project, run_name, experiment, runs.created_ns, "
                "runs.closed_ns ORDER BY runs.created_ns DESC, runs.id DESC")
        return [_run_summary(row, now) for row in rows]

    def get_run(self, workspace: str, project: str, run_name: str) -> dict[str, Any]:
        now = time.time_ns()
        with self.db.read() as tx:
            run = tx.one(
                "SELECT runs.id, experiment, runs.created_ns, aggregation_rules, runs.closed_ns "
                "FROM runs JOIN projects ON projects.id = runs.project_id "
                "WHERE workspace = ? AND project = ? AND run_name = ?",
                (workspace, project, run_name))
            if run is None:
                raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
            run_id, experiment, created_ns, rules, closed_ns = run
            attributes = {
                path: {"kind": kind, "value": json.loads(value)}
                for path, kind, value in tx.all(
                    "SELECT path, kind, value FROM attributes WHERE run_id = ? ORDER BY path",
                    (run_id,))
            }
            series = [series_dict(row) for row in tx.all(
                f"SELECT {SERIES_COLUMNS} FROM series WHERE run_id = ? ORDER BY id", (run_id,))]
        last_activity = max([created_ns] + [s["last_activity_ns"] for s in series])
        return {
            "workspace": workspace,
            "project": project,
            "run": run_name,
            "experiment": experiment,
            "created_ns": created_ns,
            "last_activity_ns": last_activity,
            "status": run_status(closed_ns, last_activity, now),
            "aggregation_rules": json.loads(rules),
            "attributes": attributes,
            "series": series,
        }

    def _chunk_rows(self, tx: Tx, series_ids: list[int], lo: int, hi: int
                    ) -> list[tuple[int, int, int, int, bytes]]:
        clause, args = tx.among("series_id", series_ids)
        return [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bytes(r[4])) for r in tx.all(
            f"SELECT id, n, x_first, x_last, blocks FROM chunks WHERE {clause} "
            "AND x_first <= ? AND x_last >= ? ORDER BY x_first, id", (*args, hi, lo))]

    def _chunk_columns(self, tx: Tx, chunk_ids: list[int], lo: int, hi: int) -> list[Columns]:
        """Each chunk's points within [lo, hi], in (x, minor) order; one list per chunk."""
        parts = []
        for start in range(0, len(chunk_ids), 500):
            clause, args = tx.among("id", chunk_ids[start:start + 500])
            for (blob,) in tx.all(f"SELECT data FROM chunks WHERE {clause}", args):
                columns = decode_columns(bytes(blob))
                inside = (columns.x >= lo) & (columns.x <= hi)
                if not inside.all():
                    columns = columns.take(inside)
                if columns.n:
                    parts.append(_in_order(columns))
        return parts

    def _columns(self, tx: Tx, chunk_ids: list[int], lo: int, hi: int) -> Columns:
        """The points of these chunks within [lo, hi], in (x, minor) order."""
        parts = self._chunk_columns(tx, chunk_ids, lo, hi)
        if not parts:
            return Columns.empty()
        return _in_order(Columns.concat(parts))

    def _series_range(self, tx: Tx, series_ids: list[int], start: int | None, end: int | None
                      ) -> tuple[int, int] | None:
        clause, args = tx.among("id", series_ids)
        row = tx.one(f"SELECT MIN(x_min), MAX(x_max) FROM series WHERE {clause}", args)
        if row is None or row[0] is None:
            return None
        lo = int(row[0]) if start is None else start
        hi = int(row[1]) if end is None else end
        return (lo, hi) if lo <= hi else None

    def buckets(self, series_ids: list[int], n: int, start: int | None = None,
                end: int | None = None, *, spread: bool = False) -> dict[str, Any]:
        """At most ``n`` buckets over [start, end] of one series (or, with ``spread``, of
        several at once: the RL band across environments)."""
        with self.db.read() as tx:
            span = self._series_range(tx, series_ids, start, end)
            if span is None:
                return aggregate(_no_blocks(), 0, 0, 1, spread=spread)
            lo, hi = span
            rows = self._chunk_rows(tx, series_ids, lo, hi)
            if needs_points(sum(r[1] for r in rows), n):
                return bucket_points(self._columns(tx, [r[0] for r in rows], lo, hi), lo, hi, n,
                                     spread=spread)
            inner = [r for r in rows if r[2] >= lo and r[3] <= hi]
            edges = [r[0] for r in rows if r[2] < lo or r[3] > hi]
            blocks = [decode_blocks([r[4] for r in inner])] if inner else []
            # Chunks cut by the range's ends: blocks of their points inside it, chunk by chunk
            # (a block must never span two chunks: it would carry points from far away).
            blocks += [Blocks.of_points(part, BLOCK_POINTS)
                       for part in self._chunk_columns(tx, edges, lo, hi)]
        return aggregate(Blocks.concat(blocks) if blocks else _no_blocks(), lo, hi, n,
                         spread=spread)

    def get_points(self, series_id: int, start: int | None = None, end: int | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
        """Points of one series in step order; ``start``/``end`` bound the (major) step."""
        with self.db.read() as tx:
            span = self._series_range(tx, [series_id], start, end)
            if span is None:
                return []
            rows = self._chunk_rows(tx, [series_id], *span)
            columns = self._columns(tx, [r[0] for r in rows], *span)
        if limit is not None:
            columns = columns.take(slice(0, max(limit, 0)))
        return [{"step": x, "minor_step": m, "timestamp_ns": t,
                 "value": None if missing else v}
                for x, m, t, v, missing in zip(columns.x.tolist(), columns.minor.tolist(),
                                                columns.t.tolist(), columns.v.tolist(),
                                                columns.missing.tolist(), strict=True)]

    def points_after(self, tx: Tx, series_id: int, after: tuple[int, int] | None, limit: int
                     ) -> Columns:
        """At most ``limit`` points of one series after the (step, minor step) ``after``, in
        order: one page of :mod:`.query_api`'s points. Only the chunks the page needs are
        decoded (chunks of several sessions may overlap in steps, so every chunk starting
        before the page's last step is read), so paging through a series reads it once."""
        lo = -(2**63) if after is None else after[0]
        rows = self._chunk_rows(tx, [series_id], lo, INT64_MAX)
        taken, hi = 0, lo
        for row in rows:  # ordered by first step
            if taken >= limit and row[2] > hi:
                break
            if row[2] > lo:  # every point of this chunk comes after the cursor
                taken += row[1]
            hi = max(hi, row[3])
        columns = self._columns(tx, [r[0] for r in rows if r[2] <= hi], lo, hi)
        if after is not None and columns.n:
            later = (columns.x > after[0]) | ((columns.x == after[0])
                                              & (columns.minor > after[1]))
            columns = columns.take(later)
        return columns.take(slice(0, limit))

    def _find_run(self, tx: Tx, workspace: str, project: str, run_name: str) -> int:
        row = tx.one("SELECT runs.id FROM runs JOIN projects ON projects.id = runs.project_id "
                     "WHERE workspace = ? AND project = ? AND run_name = ?",
                     (workspace, project, run_name))
        if row is None:
            raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
        return int(row[0])

    def has_series(self, workspace: str, project: str, run_name: str, series_id: int) -> bool:
        """Whether ``series_id`` is a series of this run (NotFound if the run is not there)."""
        with self.db.read() as tx:
            run_id = self._find_run(tx, workspace, project, run_name)
            return tx.one("SELECT 1 FROM series WHERE id = ? AND run_id = ?",
                          (series_id, run_id)) is not None

    def series_ids(self, workspace: str, project: str, run_name: str, metric_name: str,
                   scale: str | None = None, evaluation: bool | None = None) -> list[int]:
        """The RL series of one metric across environments (and episodes) of a run."""
        with self.db.read() as tx:
            run_id = self._find_run(tx, workspace, project, run_name)
            rows = tx.all("SELECT id, scale, labels FROM series WHERE run_id = ? AND kind = 'rl' "
                          "AND metric_name = ? ORDER BY id", (run_id, metric_name))
        out = []
        for series_id, series_scale, labels in rows:
            if scale is not None and series_scale != scale:
                continue
            if evaluation is not None and \
                    (json.loads(labels).get("evaluation") == "true") != evaluation:
                continue
            out.append(int(series_id))
        return out

    def series_ends(self, workspace: str, project: str, run_name: str) -> list[dict[str, Any]]:
        """Where each series of a run ends: its identity and its last stored step (for an RL
        series, its last ``rl_step``). A client resuming the run reads it once, to refuse a
        rerun's points that would go before what is stored (NotFound if the run is not
        there)."""
        with self.db.read() as tx:
            run_id = self._find_run(tx, workspace, project, run_name)
            rows = tx.all("SELECT kind, metric_name, scale, labels, environment_id, has_episode, "
                          "episode, x_max FROM series WHERE run_id = ? AND x_max IS NOT NULL "
                          "ORDER BY id", (run_id,))
        return [{"kind": kind, "metric_name": name, "scale": scale, "labels": json.loads(labels),
                 "environment_id": environment, "episode": episode if has_episode else None,
                 "last_step": int(last)}
                for kind, name, scale, labels, environment, has_episode, episode, last in rows]

    def iter_export(self, workspace: str, project: str, run_name: str) -> Iterator[dict[str, Any]]:
        """Every point of a run with its series identity, series by series in step order."""
        run = self.get_run(workspace, project, run_name)
        for series in run["series"]:
            identity = {k: series[k] for k in _SERIES_IDENTITY}
            for point in self.get_points(series["id"]):
                yield {**identity, **point}


_SERIES_IDENTITY = ("kind", "metric_name", "scale", "labels", "environment_id", "episode")


def _in_order(columns: Columns) -> Columns:
    if columns.n > 1:
        dx = np.diff(columns.x)
        if not np.all((dx > 0) | ((dx == 0) & (np.diff(columns.minor) >= 0))):
            return columns.take(np.lexsort((columns.minor, columns.x)))
    return columns


def _no_blocks() -> Blocks:
    empty_i = np.empty(0, np.int64)
    empty_f = np.empty(0, np.float64)
    return Blocks(empty_i, empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, empty_f,
                  empty_f, empty_f)


def run_status(closed_ns: int | None, last_activity: int, now: int) -> str:
    if closed_ns is not None and closed_ns >= last_activity:
        return "finished"
    return "live" if now - last_activity < LIVE_WINDOW_NS else "idle"


def _run_summary(row: tuple[Any, ...], now: int) -> dict[str, Any]:
    (_, workspace, project, run_name, experiment, created_ns, closed_ns, series_count,
     point_count, activity) = row
    last_activity = max(int(created_ns), int(activity))
    return {
        "workspace": workspace,
        "project": project,
        "run": run_name,
        "experiment": experiment,
        "created_ns": created_ns,
        "last_activity_ns": last_activity,
        "status": run_status(closed_ns, last_activity, now),
        "series_count": int(series_count),
        "point_count": int(point_count),
    }


def _value(value: float | None, kind: int | None) -> float | None:
    if kind == 1:
        return math.nan
    return value if kind == 0 else None


def series_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    (series_id, kind, metric_name, scale, labels, environment_id, has_episode, episode, ordering,
     point_count, valid_count, x_min, x_max, _minor_max, vmin, vmax, vsum, last_x, last_minor,
     last_t, last_value, last_kind, last_activity) = row
    last = None
    if last_x is not None:
        last = {"step": last_x, "minor_step": last_minor or 0, "timestamp_ns": last_t,
                "value": _value(last_value, last_kind)}
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
                    "last": _value(last_value, last_kind) if last_x is not None else None},
        "last_activity_ns": last_activity,
    }


def _migrate_v1(tx: Tx) -> None:
    """Move a version-1 database's points (a row each) into chunks, then drop that table.

    Version-1 points carry no session: they become one absolute session (id 0) per series, so
    they keep their steps, and later sessions' relative steps go after them.
    """
    writer = _Writer()
    aggregates: dict[int, _Aggregates] = {}
    for series_id, kind in tx.all("SELECT id, kind FROM series ORDER BY id"):
        rows = tx.all("SELECT step, minor_step, timestamp_ns, value, value_kind FROM points "
                      "WHERE series_id = ? ORDER BY step, minor_step", (series_id,))
        if not rows:
            continue
        n = len(rows)
        columns = Columns(
            np.fromiter((r[0] for r in rows), np.int64, n),
            np.fromiter((r[1] for r in rows), np.int64, n),
            np.fromiter((r[2] or 0 for r in rows), np.int64, n),
            np.fromiter((math.nan if r[4] != 0 or r[3] is None else r[3] for r in rows),
                        np.float64, n),
            np.fromiter((r[4] == 2 for r in rows), np.bool_, n),
        )
        session = _Session(None, int(series_id), False, 0)
        writer.use(session)
        writer.plan(session, columns, kind == "rl", merge_tail=False)
        aggregate = _Aggregates(0, 0, None, None, None, None, None, None, None, None, None, None,
                                None, 0)
        aggregate.add(columns, int(columns.t.max()))
        aggregates[int(series_id)] = aggregate
    writer.flush(tx, 0)
    _update_aggregates(tx, aggregates)
    tx.run("DROP TABLE points")

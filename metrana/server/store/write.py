"""Writing: a run created, a request's points, attributes and closes stored in one transaction.

A request is planned in memory after one locking read, then written in a handful of statements
whatever its number of series (:class:`Writer`): new sessions, tail chunks topped up, new
chunks (a binary ``COPY`` on PostgreSQL), sessions and series' aggregates. What cannot be
stored is refused before anything is written (:mod:`..ingest`), so a request is stored whole
or not at all.

- **Idempotent.** A point is identified by its series, its session and its step: a retried,
  replayed or synced request stores nothing twice (a session's chunks are indexed by its last
  step, so a retry reads only the chunks it overlaps), also when two servers receive it at
  once: a series' row is locked while its points are written (PostgreSQL), and rows are
  always locked in id order, so two requests cannot deadlock.
- **Session-relative steps** (``ORDERING_MODE_RELATIVE_ORDERED``). Each session numbers a
  series' points from 0; the first time a session writes to a series it gets a *base* one past
  the series' last step, and its points are stored at ``base + step``. A resumed run therefore
  appends, a second process never overwrites the first, and a replay of the same session lands
  on the same points. Manual (absolute) steps are stored as given.
- **Aggregates** (count, min, max, sum, last point) of each series are updated on every
  write, so listing runs and series never scans points.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import attrs
import numpy as np

from ..._wire import json_number
from ..errors import Conflict, Gone, NotFound, Unprocessable
from ..ingest import INT64_MAX, ORDERING_NAMES, IncomingSeries, RunKey, parse_update
from ..point_arrays import PointArrays
from ..value_ingest import parse_values
from .chunks import CHUNK_POINTS, Blocks, decode_points, encode_blocks, encode_points
from .database import Database, Tx
from .keys import CREATED_BY, record_writer
from .liveness import heard_from
from .read import find_project, find_run
from .retired import gone_message, unretire
from .values import write_values

__all__ = ["AGGREGATE_FIELDS", "CHUNK_COLUMNS", "ORCHESTRATION_PATH", "Aggregates", "SeriesSession",
           "Writer", "create_run", "set_attribute", "update_runs", "write_aggregates"]

# The job (torchrun, Slurm, Ray, or the user's own id) whose processes write a run: stored with
# the run when it is created, in the same transaction, so a process of the same job that finds
# the run joins it, and a process of another job is told so (HTTP/JSON and gRPC alike).
ORCHESTRATION_PATH = "sys/orchestration_id"

MERGE_BELOW = 1024  # a session's last chunk smaller than this takes the next points in
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
# Columns of the rows inserted in bulk (Tx.insert_ids): name and PostgreSQL type.
CHUNK_COLUMNS = (("series_id", "int8"), ("session_ref", "int8"), ("n", "int8"),
                 ("x_first", "int8"), ("x_last", "int8"), ("t_first", "int8"), ("t_last", "int8"),
                 ("blocks", "bytea"), ("data", "bytea"))
_SESSION_COLUMNS = (("series_id", "int8"), ("session_id", "int8"), ("relative", "int8"),
                    ("base", "int8"))
AGGREGATE_FIELDS = ("point_count", "valid_count", "x_min", "x_max", "minor_max", "vmin", "vmax",
                    "vsum", "last_x", "last_minor", "last_t", "last_value", "last_kind",
                    "last_activity_ns", "tail_points", "tail_mean")
TAIL_POINTS = 10  # an RL series' last points kept beside its aggregates (last10 summaries)
_TAIL_DTYPE = np.dtype([("x", "<i8"), ("minor", "<i8"), ("v", "<f8")])


def _nullable(value: float) -> float | None:
    """SQLite stores NaN as NULL anyway; say so explicitly on both databases."""
    return None if value != value else value


def _key_after(x: int, minor: int, last_x: int | None, last_minor: int | None) -> bool:
    return last_x is None or (x, minor) > (last_x, last_minor or 0)


def _strictly_increasing(points: PointArrays) -> bool:
    if points.n < 2:
        return True
    dx = np.diff(points.x)
    return bool(np.all((dx > 0) | ((dx == 0) & (np.diff(points.minor) > 0))))


def _unique_sorted(points: PointArrays) -> PointArrays:
    """Points in step order; the first of several equal steps in one request wins."""
    order = np.lexsort((points.minor, points.x))  # stable: request order among equals
    points = points.take(order)
    keep = np.ones(points.n, dtype=bool)
    keep[1:] = (np.diff(points.x) != 0) | (np.diff(points.minor) != 0)
    return points.take(keep)


def _not_stored(tx: Tx, session_ref: int, points: PointArrays) -> PointArrays:
    """The points (unique, sorted) this session has not stored yet: a retry, a replay, or a
    gap filled. Only the session's chunks that overlap the request's steps are read."""
    lo, hi = int(points.x[0]), int(points.x[-1])
    existing: set[tuple[int, int]] = set()
    for (blob,) in tx.all("SELECT data FROM chunks WHERE session_ref = ? AND x_last >= ? "
                          "AND x_first <= ?", (session_ref, lo, hi)):
        stored = decode_points(bytes(blob))
        existing.update(zip(stored.x.tolist(), stored.minor.tolist(), strict=True))
    if not existing:
        return points
    keep = np.fromiter(((x, m) not in existing for x, m in
                        zip(points.x.tolist(), points.minor.tolist(), strict=True)),
                       bool, points.n)
    return points.take(keep)


@attrs.define
class Aggregates:
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
    tail_points: bytes | None = None
    tail_mean: float | None = None
    changed: bool = False

    def add(self, points: PointArrays, now: int, *, rl: bool = False) -> None:
        """Count ``points`` in; an RL series also keeps its last :data:`TAIL_POINTS` points
        (by step, then minor step) and their mean: "the mean of the last 10 episodes"."""
        if rl:
            self._add_tail(points)
        ok = ~(np.isnan(points.v) | points.missing)
        new_valid = int(ok.sum())
        if new_valid:
            values = points.v[ok]
            low, high = float(values.min()), float(values.max())
            self.vmin = low if self.vmin is None else min(self.vmin, low)
            self.vmax = high if self.vmax is None else max(self.vmax, high)
            # A NULL sum over valid values is NaN (inf + -inf), and stays NaN.
            before = (math.nan if self.vsum is None and self.valid_count
                      else (self.vsum or 0.0))
            with np.errstate(invalid="ignore", over="ignore"):
                self.vsum = _nullable(float(values.sum()) + before)
        self.point_count += points.n
        self.valid_count += new_valid
        x_lo, x_hi = int(points.x.min()), int(points.x.max())
        self.x_min = x_lo if self.x_min is None else min(self.x_min, x_lo)
        self.x_max = x_hi if self.x_max is None else max(self.x_max, x_hi)
        m_hi = int(points.minor.max())
        self.minor_max = m_hi if self.minor_max is None else max(self.minor_max, m_hi)
        index = int(np.lexsort((points.minor, points.x))[-1])
        end_x, end_minor = int(points.x[index]), int(points.minor[index])
        if self.last_x is None or (end_x, end_minor) >= (self.last_x, self.last_minor or 0):
            value = float(points.v[index])
            kind = 2 if points.missing[index] else (1 if value != value else 0)
            self.last_x, self.last_minor, self.last_t = end_x, end_minor, int(points.t[index])
            self.last_value, self.last_kind = (None if kind else value), kind
        self.last_activity_ns = now
        self.changed = True

    def _add_tail(self, points: PointArrays) -> None:
        new = np.empty(min(points.n, TAIL_POINTS), _TAIL_DTYPE)
        order = np.lexsort((points.minor, points.x))[-new.shape[0]:]
        new["x"], new["minor"] = points.x[order], points.minor[order]
        new["v"] = np.where(points.missing[order], np.nan, points.v[order])
        old = (np.frombuffer(bytes(self.tail_points), _TAIL_DTYPE) if self.tail_points
               else np.empty(0, _TAIL_DTYPE))
        both = np.concatenate([old, new])
        both = both[np.lexsort((both["minor"], both["x"]))][-TAIL_POINTS:]
        self.tail_points = both.tobytes()
        values = both["v"][~np.isnan(both["v"])]
        self.tail_mean = float(values.mean()) if values.size else None

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in AGGREGATE_FIELDS)


@attrs.define(eq=False)
class SeriesSession:
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

    session: SeriesSession
    rl: bool
    tail: PointArrays | None  # points that top up the session's small last chunk
    parts: list[PointArrays]  # new chunks


class Writer:
    """Everything one request writes, planned in memory, then written in a few statements:
    new sessions (one insert), tail chunks (one read, one pipelined update), new chunks (one
    bulk insert: binary COPY on PostgreSQL), sessions and series (one pipelined update each).
    The round trips per request do not grow with its number of series."""

    def __init__(self) -> None:
        self.sessions: list[SeriesSession] = []
        self.writes: list[_Write] = []
        self._seen: set[int] = set()

    def use(self, session: SeriesSession) -> None:
        """A session this request touches (inserted if new, updated if written to)."""
        if id(session) not in self._seen:
            self._seen.add(id(session))
            self.sessions.append(session)

    def plan(self, session: SeriesSession, points: PointArrays, rl: bool, *,
             merge_tail: bool) -> None:
        """Chunk ``points`` (sorted, new) for ``session``, topping up its tail chunk if
        ``merge_tail`` and it is small."""
        tail = None
        if merge_tail and session.tail_chunk is not None and session.tail_count < MERGE_BELOW:
            room = CHUNK_POINTS - session.tail_count
            tail, points = points.take(slice(0, room)), points.take(slice(room, None))
        parts = [points.take(slice(start, start + CHUNK_POINTS))
                 for start in range(0, points.n, CHUNK_POINTS)]
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
        tails: dict[int, PointArrays] = {}
        if merging:
            clause, args = tx.among("id", [w.session.tail_chunk for w in merging])
            tails = {int(r[0]): decode_points(bytes(r[1]))
                     for r in tx.all(f"SELECT id, data FROM chunks WHERE {clause}", args)}
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        owners: list[tuple[SeriesSession, int]] = []
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
                    merged = PointArrays.concat([previous, w.tail])
                    updates.append((*_chunk_values(merged, w.rl), s.tail_chunk))
                    s.tail_count = merged.n
            for part in parts:
                inserts.append((s.series_id, s.ref, *_chunk_values(part, w.rl)))
                owners.append((s, part.n))
        tx.many("UPDATE chunks SET n = ?, x_first = ?, x_last = ?, t_first = ?, t_last = ?, "
                "blocks = ?, data = ? WHERE id = ?", updates)
        for (s, count), chunk_id in zip(owners, tx.insert_ids("chunks", CHUNK_COLUMNS, inserts),
                                        strict=True):
            s.tail_chunk, s.tail_count = chunk_id, count  # the last one written wins
        tx.many("UPDATE sessions SET last_x = ?, last_minor = ?, tail_chunk = ?, tail_count = ? "
                "WHERE id = ?", [(s.last_x, s.last_minor, s.tail_chunk, s.tail_count, s.ref)
                                 for s in self.sessions if s.changed])


def _chunk_values(part: PointArrays, rl: bool) -> tuple[Any, ...]:
    return (part.n, int(part.x[0]), int(part.x[-1]), int(part.t.min()), int(part.t.max()),
            encode_blocks(Blocks.of_points(part)), encode_points(part, rl))


def write_aggregates(tx: Tx, aggregates: dict[int, Aggregates]) -> None:
    assignments = ", ".join(f"{name} = ?" for name in AGGREGATE_FIELDS)
    tx.many(f"UPDATE series SET {assignments} WHERE id = ?",
            [(*a.row(), series_id) for series_id, a in sorted(aggregates.items()) if a.changed])


def create_run(db: Database, request: dict[str, Any], writer: str | None = None) -> None:
    """Store a CreateRunRequest; raises Conflict if the run exists. ``writer``: the prefix of
    the key that sent it, kept as the run's ``created_by`` and its first writer."""
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
    with db.write() as tx:
        project_id = find_project(tx, key.workspace, key.project)
        if project_id is None:
            if not request.get("create_project_if_missing", False):
                raise NotFound(f"project {key.workspace}/{key.project} does not exist "
                               "(send createProjectIfMissing: true to create it)")
            tx.run("INSERT INTO projects (workspace, project, created_ns) VALUES (?, ?, ?) "
                   "ON CONFLICT DO NOTHING", (key.workspace, key.project, now))
            project_id = find_project(tx, key.workspace, key.project)
            assert project_id is not None
        created = tx.one(
            "INSERT INTO runs (project_id, run_name, experiment, created_ns, "
            "aggregation_rules) VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING id",
            (project_id, key.run_name, run.get("experiment"), now, json.dumps(rules)))
        orchestration = str(run.get("orchestration_identifier") or "")
        if created is None:
            # READ COMMITTED (PostgreSQL) or the write lock (SQLite): the creator has committed,
            # so its orchestration id, written with the run, is visible here.
            existing = tx.one("SELECT a.value FROM attributes a JOIN runs r ON r.id = a.run_id "
                              "WHERE r.project_id = ? AND r.run_name = ? AND a.path = ?",
                              (project_id, key.run_name, ORCHESTRATION_PATH))
            raise Conflict(f"run {key} already exists",
                           str(json.loads(existing[0])) if existing is not None else "")
        unretire(tx, key.workspace, key.project, key.run_name)
        if orchestration:
            tx.run("INSERT INTO attributes (run_id, path, kind, value) VALUES (?, ?, ?, ?)",
                   (int(created[0]), ORCHESTRATION_PATH, "string", json.dumps(orchestration)))
        if writer is not None:
            tx.run("INSERT INTO attributes (run_id, path, kind, value) VALUES (?, ?, ?, ?)",
                   (int(created[0]), CREATED_BY, "string", json.dumps(writer)))
            record_writer(tx, [int(created[0])], writer, now)


def update_runs(db: Database, request: dict[str, Any], writer: str | None = None) -> int:
    """Store an UpdateRunsRequest in one transaction; returns the points newly stored.
    ``writer``: the prefix of the key that sent it, added to each run's writers.

    Locks are taken in one order by every request, so two servers writing the same runs
    wait for each other but never deadlock: new series are inserted in identity order,
    series rows locked in id order, attributes written in (run, path) order, runs closed
    in id order, writers recorded last in run id order.
    """
    session, runs = parse_update(request)
    valued = [parse_values(update, index)
              for index, update in enumerate(request.get("run_updates", []))]
    now = time.time_ns()
    with db.write() as tx:
        run_ids = [_run_id(tx, run.key) for run in runs]
        found = _series_ids(tx, [(run_id, incoming) for run_id, run
                                 in zip(run_ids, runs, strict=True)
                                 for incoming in run.series])
        stored = _write_points(tx, session, found, now, db.for_update)
        for run_id, values in zip(run_ids, valued, strict=True):
            if values:
                stored += write_values(tx, run_id, values, now)
        attributes = [(run_id, attribute) for run_id, run in zip(run_ids, runs, strict=True)
                      for attribute in run.attributes]
        # Stable: several values of one path keep their request order (the last wins).
        attributes.sort(key=lambda item: (item[0], str(item[1].get("path", ""))))
        for run_id, attribute in attributes:
            set_attribute(tx, run_id, attribute, db.for_update)
        for run_id in sorted({run_id for run_id, run in zip(run_ids, runs, strict=True)
                              if run.close}):
            tx.run("UPDATE runs SET closed_ns = ? WHERE id = ?", (now, run_id))
        heard_from(tx, [(run_id, session, run.close)
                        for run_id, run in zip(run_ids, runs, strict=True)], now)
        if writer is not None:  # last: a writer's row is locked only until the commit
            record_writer(tx, run_ids, writer, now)
    return stored


def _run_id(tx: Tx, key: RunKey) -> int:
    """The run's id, its row share-locked on PostgreSQL (a delete or rename waits for this
    request, and this request for them)."""
    run = find_run(tx, key.workspace, key.project, key.run_name,
                   lock=" FOR SHARE OF runs" if tx.dialect == "postgresql" else "")
    if run is None:
        gone = gone_message(tx, key.workspace, key.project, key.run_name)
        if gone is not None:
            raise Gone(f"{gone}: its points are refused (log to another run_name, or init() "
                       "this one again to start it anew)")
        raise NotFound(f"run {key} does not exist; create it with POST /v1/runs first")
    return run.id

def _series_ids(tx: Tx, incoming: list[tuple[int, IncomingSeries]]
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
            same[1].points = PointArrays.concat([same[1].points, series.points])
    return list(merged.values())


def _write_points(tx: Tx, session_id: int, found: list[tuple[int, IncomingSeries]], now: int,
                 for_update: str) -> int:
    """Plan every series' points in memory (each series' row locked first), then write
    them all at once (:class:`Writer`)."""
    if not found:
        return 0
    series_ids = sorted({series_id for series_id, _ in found})
    clause, args = tx.among("id", series_ids)
    aggregates = {int(row[0]): Aggregates(*row[1:]) for row in tx.all(
        f"SELECT id, {', '.join(AGGREGATE_FIELDS)} FROM series WHERE {clause} "
        "ORDER BY id" + for_update, args)}
    clause, args = tx.among("series_id", series_ids)
    sessions = {(int(r[1]), bool(r[2])): SeriesSession(int(r[0]), int(r[1]), bool(r[2]), *r[3:])
                for r in tx.all(
                    "SELECT id, series_id, relative, base, last_x, last_minor, tail_chunk, "
                    f"tail_count FROM sessions WHERE session_id = ? AND {clause}",
                    (session_id, *args))}
    writer = Writer()
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
            session = SeriesSession(None, series_id, incoming.relative, base)
            sessions[(series_id, incoming.relative)] = session
        writer.use(session)
        points = incoming.points
        if points.n == 0:
            continue
        base = session.base
        if base:
            shifted = points.minor if rl else points.x
            if int(shifted.max()) > INT64_MAX - base:
                raise Unprocessable(f"{incoming.path}: steps of this session would pass "
                                    f"2**63-1 after the {base:,} points before it")
            if rl:
                points = PointArrays(points.x, points.minor + base, points.t, points.v,
                                     points.missing)
            else:
                points = PointArrays(points.x + base, points.minor, points.t, points.v,
                                     points.missing)
        appending = (_key_after(int(points.x[0]), int(points.minor[0]), session.last_x,
                                session.last_minor)
                     and _strictly_increasing(points))
        if not appending:
            points = _unique_sorted(points)
            if session.ref is not None:
                points = _not_stored(tx, session.ref, points)
            if points.n == 0:
                continue
        writer.plan(session, points, rl, merge_tail=appending)
        aggregate.add(points, now, rl=rl)
        stored += points.n
    writer.flush(tx, session_id)
    write_aggregates(tx, aggregates)
    return stored


def set_attribute(tx: Tx, run_id: int, attribute: dict[str, Any], for_update: str) -> None:
    path = attribute.get("path", "")
    if not path:
        raise Unprocessable("attribute path must not be empty")
    if path == CREATED_BY:
        raise Unprocessable(f"attribute {CREATED_BY!r} is set by the server (the key that "
                            "created the run); log yours under another name")
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
                         + for_update, (run_id, path))
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


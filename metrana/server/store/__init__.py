"""The store: runs, series and points on SQLite or PostgreSQL, the same way on both. It owns
every SQL statement of the server; nothing outside this package writes one.

What it guarantees, on either database:

- **A request is stored whole or not at all** (one transaction), and what cannot be stored is
  refused before anything is written (:mod:`..ingest`).
- **Idempotent**: a retried, replayed or synced request stores nothing twice, also when two
  servers receive it at once (:mod:`.write`).
- **Session-relative steps**: a resumed run appends, a second process never overwrites the
  first (:mod:`.write`).
- **No state but the database.** Several servers can share one PostgreSQL database.

The package, by job:

- :mod:`.database`: the ``Database``/``Tx`` layer (one SQLite writer connection and WAL
  readers; a pool of PostgreSQL connections), and what differs between the two;
- :mod:`.schema`: the tables, their version, and the migrations of older databases;
- :mod:`.write`: ingest planning and flushing (:func:`.write.create_run`,
  :func:`.write.update_runs`);
- :mod:`.read`: every query the server answers; :mod:`.filters` compiles a query's filters
  and orderings into SQL; :mod:`.chunks` and :mod:`.buckets` are how points are stored and
  reduced for charts;
- :mod:`.views`: rows to JSON (and raw columns), with one spelling of NaN and ±inf;
- :mod:`.keys`: API keys (hashes only), the dashboard's sessions, and each run's writers.

:class:`Store` is their face: each method is one transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from ..._orchestration import WRITER_LABEL
from ..api_keys import KeyRecord
from ..errors import Conflict, NotFound, QueryError, SchemaError, Unprocessable
from . import keys, liveness, manage, read, values, views, write
from .database import Database, Tx, open_database
from .filters import RL_LAST_EPISODES, SYS_FIELDS, Compiler, SeriesName
from .groups import BAND_KINDS
from .schema import ensure_schema
from .views import Binary

__all__ = ["SCORE_SUMMARIES", "Binary", "Conflict", "NotFound", "RunScores", "SchemaError",
           "SeriesName", "SeriesSpec", "Store", "Unprocessable"]

_SAMPLED = 50  # an attribute with at most this many distinct values lists them
SeriesSpec = tuple[int, int | None, int | None]  # a series id and the steps [start, end] asked
# A run's score for the statistics: last10 is an RL metric's last (each environment's mean of
# its last 10 episodes, averaged) or a standard series' mean of its last 10 points.
SCORE_SUMMARIES = ("last10", "last", "min", "max", "mean")


@attrs.frozen
class RunScores:
    """Matching runs in name order: each one's group key, task and score (None: none)."""

    series: SeriesName
    names: list[str]
    keys: list[tuple[Any, ...]]
    tasks: list[Any]
    scores: list[float | None]
    matched: int
    truncated: bool


class Store:
    """One database (a SQLite file, or a ``postgresql://`` URL) of runs, series and points.

    Methods are synchronous and thread-safe; the app calls them from worker threads. Reads
    return what the read API answers (JSON-able data, bytes of JSON already encoded, or
    :class:`Binary`); a missing run or project raises :class:`NotFound`.
    """

    def __init__(self, target: str | Path, *, insert_method: str = "copy",
                 heartbeat_timeout_s: float = liveness.DEFAULT_HEARTBEAT_TIMEOUT_S) -> None:
        """``insert_method``: how PostgreSQL inserts a request's chunks (``copy``, the default
        and fastest measured; ``executemany``; ``each``). SQLite ignores it.
        ``heartbeat_timeout_s``: a run not closed and not heard from for this long is
        ``crashed`` (:mod:`.liveness`)."""
        if not heartbeat_timeout_s > 0:
            raise ValueError("heartbeat_timeout_s must be > 0 seconds")
        self.heartbeat_timeout_s = float(heartbeat_timeout_s)
        self.db: Database = open_database(target, insert_method=insert_method)
        try:
            ensure_schema(self.db)
        except BaseException:
            self.db.close()
            raise
        self.location = self.db.description
        self.path: Path | None = getattr(self.db, "path", None)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writes

    def create_run(self, request: dict[str, Any], writer: str | None = None) -> None:
        """Store a CreateRunRequest; raises Conflict if the run exists. ``writer``: the
        prefix of the key that sent it (the run's ``created_by``), None without keys."""
        write.create_run(self.db, request, writer)

    def update_runs(self, request: dict[str, Any], writer: str | None = None) -> int:
        """Store an UpdateRunsRequest in one transaction; returns the points newly stored.
        ``writer``: the prefix of the key that sent it, added to each run's writers."""
        return write.update_runs(self.db, request, writer)

    # ----------------------------------------------------------------- cleanup

    def delete_run(self, workspace: str, project: str, run_name: str) -> dict[str, Any]:
        """Delete a run and everything stored for it; the series and points it had."""
        return manage.delete_run(self.db, workspace, project, run_name)

    def rename_run(self, workspace: str, project: str, run_name: str, new_name: str
                   ) -> dict[str, Any]:
        """Rename a run (Conflict if the new name is taken)."""
        return manage.rename_run(self.db, workspace, project, run_name, new_name)

    def edit_run(self, workspace: str, project: str, run_name: str, *,
                 tags: list[str] | None = None, notes: str | None = None) -> None:
        """Set a run's tags (the whole set) and/or notes."""
        manage.edit_run(self.db, workspace, project, run_name, tags=tags, notes=notes)

    def compact(self) -> bool:
        """Give deleted runs' space back to the disk (SQLite: VACUUM); False if the
        database does that by itself (PostgreSQL)."""
        return manage.compact(self.db)

    def _statuses(self, tx: Tx, run_ids: list[int], now: int) -> dict[int, str]:
        return liveness.statuses(tx, run_ids, now, self.heartbeat_timeout_s)

    # ------------------------------------------------------------------- runs

    def list_runs(self, workspaces: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """Every run (of ``workspaces``, when given), newest first, with its series and point
        counts and its status."""
        now = time.time_ns()
        with self.db.read() as tx:
            rows = read.run_list(tx, workspaces)
            ids = [run.id for run, _, _, _ in rows]
            status = self._statuses(tx, ids, now)
            tags = read.tags_of(tx, ids)
        return [views.run_summary(run, activity, series, points, status[run.id],
                                  tags.get(run.id))
                for run, activity, series, points in rows]

    def get_run(self, workspace: str, project: str, run_name: str) -> dict[str, Any]:
        """A run with its attributes and series."""
        now = time.time_ns()
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            attributes = read.attributes_of(tx, run.id)
            series = read.series_of_run(tx, run.id)
            status = self._statuses(tx, [run.id], now)[run.id]
            writers = keys.writers_of(tx, run.id)
            processes = liveness.processes(tx, run.id, attributes)
        return views.run_detail(run, attributes, series, status, writers, processes)

    # ------------------------------------------------------ histograms and point clouds

    def value_series(self, workspace: str, project: str, run_name: str) -> dict[str, Any]:
        """The run's histogram and scatter series, with their last point's summary."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            return {"series": values.value_series(tx, run.id)}

    def value_chart(self, workspace: str, project: str, run_name: str, series_id: int,
                    columns: int) -> bytes:
        """A histogram series as a distribution-over-steps chart (:func:`.values.histogram_chart`),
        or a scatter series' steps."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            series = values.one_series(tx, run.id, series_id)
            if series["kind"] == values.HISTOGRAM:
                chart = values.histogram_chart(tx, series_id, columns)
            else:
                chart = {"steps": values.value_steps(tx, series)}
        # Finite numbers and None only (numpy columns as they are): encoded once.
        return views.encoded({"series": series, **chart})

    def value_at(self, workspace: str, project: str, run_name: str, series_id: int,
                 step: int) -> dict[str, Any]:
        """The histogram or point cloud a series holds at ``step``."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            return values.value_at(tx, values.one_series(tx, run.id, series_id), step)

    def histograms(self, workspace: str, project: str, run_name: str, metric: str
                   ) -> dict[str, Any]:
        """Every histogram of a run's series ``metric``, in step order, edges shared."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            series = values.find_series(tx, run.id, metric, (values.HISTOGRAM,))
            return {"series": series, **values.histogram_points(tx, series["id"])}

    def scatter(self, workspace: str, project: str, run_name: str, metric: str,
                step: int | None) -> dict[str, Any]:
        """A run's scatter series ``metric``: every step's cloud, or the one at ``step``."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            series = values.find_series(tx, run.id, metric, ("scatter", "scatter3d"))
            return {"series": series, "points": values.scatter_points(
                tx, series["id"], series["kind"] == "scatter3d", step)}

    def get_runs(self, names: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
        """Several runs as :meth:`get_run` answers each, in one transaction: the compare
        page's first read is one request, not one per run (NotFound names the first missing
        run)."""
        now = time.time_ns()
        with self.db.read() as tx:
            found = []
            for workspace, project, run_name in names:
                run = read.run(tx, workspace, project, run_name)
                attributes = read.attributes_of(tx, run.id)
                found.append((run, attributes, read.series_of_run(tx, run.id),
                              self._statuses(tx, [run.id], now)[run.id],
                              keys.writers_of(tx, run.id),
                              liveness.processes(tx, run.id, attributes)))
        return [views.run_detail(run, attributes, series, status, writers, processes)
                for run, attributes, series, status, writers, processes in found]

    def changed_series(self, workspace: str, project: str, run_name: str, since_ns: int
                       ) -> dict[str, Any]:
        """The run's status and the series written after ``since_ns`` (server time, ns).

        ``now_ns`` is the cursor for the next call. A writer stamps its series with the time
        its request started, so a request that started before ``now_ns`` may commit after this
        read: callers ask again from a few seconds before the cursor (a series seen twice is
        harmless).
        """
        now = time.time_ns()
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            activity = read.series_activity(tx, run.id)
            series = read.series_of_run(tx, run.id, since_ns)
            status = self._statuses(tx, [run.id], now)[run.id]
        return {"now_ns": now, **run.activity(activity, status),
                "series": [views.series_json(row) for row in series]}

    def list_series(self, workspace: str, project: str, runs: list[str] | None) -> bytes:
        """Every series of the named runs (None: of every run of the project), from the
        per-series aggregates (no point is read): what an export lists before reading
        points, and where a resumed import continues."""
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            if runs is None:
                ids = read.project_runs(tx, project_id)
            else:
                ids = read.run_ids(tx, project_id, set(runs), f"{workspace}/{project}") \
                    if runs else {}
            rows = read.series_listing(tx, list(ids.values()))
        return views.series_listing(rows, {run_id: name for name, run_id in ids.items()})

    # ----------------------------------------------------------------- points

    def get_points(self, series_id: int, start: int | None = None, end: int | None = None,
                   limit: int | None = None) -> list[dict[str, Any]]:
        """Points of one series in step order; ``start``/``end`` bound the (major) step."""
        with self.db.read() as tx:
            points = read.points(tx, series_id, start, end)
        if limit is not None:
            points = points.take(slice(0, max(limit, 0)))
        return views.point_dicts(points)

    def series_points(self, workspace: str, project: str, run_name: str, series_id: int,
                      start: int | None, end: int | None, limit: int | None) -> dict[str, Any]:
        """:meth:`get_points` of a series of this run (NotFound if it is not one)."""
        with self.db.read() as tx:
            self._series_of(tx, workspace, project, run_name, [series_id])
            points = read.points(tx, series_id, start, end)
        if limit is not None:
            points = points.take(slice(0, max(limit, 0)))
        return {"series_id": series_id, "points": views.point_dicts(points)}

    def query_points(self, workspace: str, project: str, *,
                     standard: list[tuple[str, SeriesName]] | None = None,
                     rl: list[tuple[str, str, str | None]] | None = None,
                     limit: int, cursor: tuple[int, int, int] | None, binary: bool,
                     timestamps: bool) -> bytes | Binary:
        """A page of at most ``limit`` points of the series named (``standard``: run and
        series; ``rl``: run, metric and scale or None, every environment and episode), series
        after series; ``cursor`` is the previous page's ``next`` (position, step, minor)."""
        start, after = (0, None) if cursor is None else (cursor[0], (cursor[1], cursor[2]))
        parts: list[dict[str, Any]] = []
        buffers = views.Buffers() if binary else None
        room = limit
        next_cursor = None
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            label = f"{workspace}/{project}"
            listed = (read.rl_points_series(tx, project_id, label, rl) if rl is not None
                      else read.standard_points_series(tx, project_id, label, standard or []))
            for position in range(start, len(listed)):
                meta = listed[position]
                points = read.points_after(tx, meta["id"], after if position == start else None,
                                           room)
                part = {"position": position, **{k: v for k, v in meta.items() if k != "id"}}
                part.update(views.columns_json(points, rl is not None, timestamps)
                            if buffers is None
                            else views.columns_binary(points, rl is not None, timestamps,
                                                      buffers))
                parts.append(part)
                room -= points.n
                if room <= 0:
                    if points.n:
                        next_cursor = [position, int(points.x[-1]), int(points.minor[-1])]
                    break
        return views.points_page(parts, next_cursor, buffers)

    # ---------------------------------------------------------------- buckets

    def buckets(self, series_ids: list[int], n: int, start: int | None = None,
                end: int | None = None, *, spread: bool = False) -> dict[str, Any]:
        """At most ``n`` buckets over [start, end] of one series (or, with ``spread``, of
        several at once: the RL band across environments)."""
        with self.db.read() as tx:
            return read.buckets(tx, series_ids, n, start, end, spread=spread)

    def series_buckets(self, workspace: str, project: str, run_name: str,
                       series: int | SeriesName, n: int, start: int | None, end: int | None
                       ) -> bytes:
        """The buckets of one series of the run, by id (NotFound if it is not one of the
        run's) or by name (QueryError if the run has no such series)."""
        with self.db.read() as tx:
            if isinstance(series, int):
                self._series_of(tx, workspace, project, run_name, [series])
                series_id = series
            else:
                run = read.run(tx, workspace, project, run_name)
                found = read.standard_series_id(tx, run.id, series)
                if found is None:
                    raise QueryError(f"run {run_name!r} has no series {series.describe()}")
                series_id = found
            buckets = read.buckets(tx, [series_id], n, start, end)
        return views.encoded({"series_id": series_id, **views.spelt_buckets(buckets)})

    def many_buckets(self, workspace: str, project: str, run_name: str,
                     specs: list[SeriesSpec], n: int, compact: bool = False) -> bytes:
        """Buckets of several series of the run, each over its own [start, end]: a page of
        many charts, and each live poll, is one request, not one per chart. ``compact``:
        raw points (buckets of one point) without the columns that repeat their value (min,
        max, last) and their counts (all 1): less than half the bytes (the dashboard)."""
        with self.db.read() as tx:
            self._series_of(tx, workspace, project, run_name, [spec[0] for spec in specs])
            answers = self._buckets_of(tx, specs, n, compact)
        return views.encoded({"series": answers})

    def runs_buckets(self, asked: list[tuple[tuple[str, str, str], list[SeriesSpec]]], n: int,
                     compact: bool = False) -> bytes:
        """:meth:`many_buckets` of several runs in one transaction and one answer,
        ``{"runs": [{"series": [...]}, ...]}`` in the order asked: the charts of runs
        compared are read in one request, not one per run."""
        with self.db.read() as tx:
            answers = []
            for names, specs in asked:
                self._series_of(tx, *names, [spec[0] for spec in specs])
                answers.append({"series": self._buckets_of(tx, specs, n, compact)})
        return views.encoded({"runs": answers})

    def series_ids(self, workspace: str, project: str, run_name: str, metric_name: str,
                   scale: str | None = None, evaluation: bool | None = None,
                   environment: str | None = None) -> list[int]:
        """The RL series of one metric across environments (and episodes) of a run; of one
        scale, evaluation or not, or one environment, if asked."""
        with self.db.read() as tx:
            return self._rl_series_ids(tx, workspace, project, run_name, metric_name, scale,
                                       evaluation, environment)

    def band(self, workspace: str, project: str, run_name: str, metric: str, *,
             scale: str | None, evaluation: bool | None, environment: str | None, n: int,
             start: int | None, end: int | None) -> bytes:
        """An RL metric reduced across environments (or within one) into at most ``n``
        buckets of ``rl_step``: min, max, mean, std, count. NotFound if the run has no such
        series."""
        with self.db.read() as tx:
            ids = self._rl_series_ids(tx, workspace, project, run_name, metric, scale,
                                      evaluation, environment)
            if not ids:
                raise NotFound(f"run {workspace}/{project}/{run_name} has no RL series "
                               f"{metric!r}" + ("" if environment is None
                                                else f" in {environment!r}"))
            band = read.buckets(tx, ids, n, start, end, spread=True)
        return views.encoded({"metric": metric, "series": len(ids),
                              **views.spelt_buckets(band)})

    def merged(self, workspace: str, project: str, run_name: str, metric: str, *,
               labels: dict[str, str], scale: str | None, n: int, start: int | None,
               end: int | None) -> bytes:
        """A ``log_distributed`` series merged across its writers (the series of ``metric``
        with these ``labels`` plus a ``writer`` label, one per writer) into at most ``n``
        buckets of steps: mean, min, max, std and count (the writers' points in the bucket;
        with a bucket per step, the mean across writers at that step). ``writers``: each
        writer's series id, for the per-writer lines. NotFound if there is none."""
        with self.db.read() as tx:
            run = read.run(tx, workspace, project, run_name)
            writers: list[tuple[str, int]] = []
            for series_id, series_scale, text in read.standard_series_of(tx, run.id, metric):
                series_labels = json.loads(text)
                writer = series_labels.pop(WRITER_LABEL, None)
                if (writer is not None and series_labels == labels
                        and (scale is None or series_scale == scale)):
                    writers.append((str(writer), series_id))
            if not writers:
                raise NotFound(f"run {workspace}/{project}/{run_name} has no series {metric!r}"
                               f" logged with log_distributed (labels {labels})")
            merged = read.buckets(tx, [series_id for _, series_id in writers], n, start, end,
                                  spread=True, merged=True)
        return views.encoded({"metric": metric, "labels": labels,
                              "writers": [{"writer": w, "series_id": i} for w, i in writers],
                              **views.spelt_buckets(merged)})

    # ------------------------------------------------------------ a project's runs

    def query_runs(self, workspace: str, project: str, *, filter: Any, order_by: Any,
                   attributes: list[str], summaries: list[tuple[SeriesName, str]],
                   cursor: tuple[Any, int] | None, limit: int, offset: int = 0,
                   total: bool = False, columnar: bool = False) -> bytes:
        """One page of the project's runs: ``filter`` and ``order_by`` are expression trees
        (:mod:`.filters`), checked against the project; each run with its values of
        ``attributes`` and ``summaries`` (a series, standard or RL, and a function). Paged by
        ``cursor`` (keyset) or ``offset``; ``total`` adds how many runs match."""
        now = time.time_ns()
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            status = liveness.status_sql(now, self.heartbeat_timeout_s)
            compiler = Compiler(tx, project_id, f"{workspace}/{project}", status=status)
            for path in attributes:
                compiler.attribute_kinds(path)
            resolved = [(compiler.check_series(name), fn) for name, fn in summaries]
            where = compiler.condition(filter) if filter is not None else None
            key, descending = compiler.order_key(order_by)
            rows = read.runs_page(tx, project_id, where, key, descending, cursor, limit, status,
                                  offset)
            ids = [int(row[0]) for row in rows]
            values = read.attribute_values(tx, ids, [p for p in attributes
                                                     if p not in SYS_FIELDS
                                                     and p != liveness.STATUS_PATH])
            aggregates = read.summary_rows(tx, ids, {name.metric for name, _ in resolved
                                                     if not name.rl})
            rl_columns = [(name, fn) for name, fn in resolved if name.rl]
            rl_values = read.expression_values(
                tx, ids, [compiler.series_value(name, fn) for name, fn in rl_columns])
            count = read.count_runs(tx, project_id, where) if total else None
        columns = views.summary_columns(ids, resolved, aggregates, rl_values)
        return views.runs_page(rows, attributes, columns, values, limit, count,
                               [views.series_label(name, fn) for name, fn in resolved],
                               columnar)

    def project_overview(self, workspace: str, project: str) -> dict[str, Any]:
        """What a project page needs before any run: how many runs, the attribute paths
        (kinds, how many distinct values, a sample of them), the metrics (standard series and
        RL metrics, with how many runs logged each), and the band kinds groups can draw."""
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            count = read.project_run_count(tx, project_id)
            paths = read.project_attributes(tx, project_id)
            samples = read.attribute_samples(
                tx, project_id, sorted({p for p, _, d, _ in paths if d <= _SAMPLED}), _SAMPLED)
            metrics = read.project_metrics(tx, project_id)
        return views.project_overview(workspace, project, count, paths, samples, metrics)

    def aggregate_runs(self, workspace: str, project: str, *, series: SeriesName, filter: Any,
                       runs: list[str] | None, group_by: list[str], n: int,
                       start: int | None, end: int | None, band: str, order_by: Any,
                       max_runs: int, per_run: bool = False,
                       aggregations: Sequence[str] | None = None) -> bytes:
        """The runs matching ``filter`` (and among ``runs``, if named), grouped by the values
        of ``group_by``, each group reduced on one grid of aligned step buckets with a band
        (:mod:`.groups`): each bucket's count of runs and ``aggregations`` (default: all).
        At most ``max_runs`` runs, the first in ``order_by``'s order (``truncated`` says when
        more matched)."""
        if band not in BAND_KINDS:
            raise QueryError(f"unknown band {band!r}; one of {', '.join(BAND_KINDS)}")
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            status = liveness.status_sql(time.time_ns(), self.heartbeat_timeout_s)
            compiler = Compiler(tx, project_id, f"{workspace}/{project}", status=status)
            name = compiler.check_series(series)
            matched, truncated, total, values = self._grouped_runs(
                tx, compiler, project_id, filter, runs, group_by, order_by, max_runs)
            ids = [run_id for run_id, _ in matched]
            owned = read.series_of_runs(tx, ids, name)
            used = [(run_id, run_name) for run_id, run_name in matched if run_id in owned]
            extent = read.series_extent(tx, [i for ids_ in owned.values() for i in ids_])
            lo, hi = (0, -1) if extent is None else extent
            lo = lo if start is None else start
            hi = hi if end is None else end
            buckets = read.run_bucket_means(tx, [owned[run_id] for run_id, _ in used],
                                            lo, hi, n)
        keys = [tuple(run_name if p == "sys/name" else values.get(run_id, {}).get(p)
                      for p in group_by) for run_id, run_name in used]
        return views.run_groups(name, group_by, keys, [run_name for _, run_name in used],
                                buckets, lo, hi, n, BAND_KINDS[band], matched=total,
                                truncated=truncated, per_run=per_run,
                                aggregations=aggregations)

    def run_scores(self, workspace: str, project: str, *, series: SeriesName, summary: str,
                   filter: Any, runs: list[str] | None, group_by: list[str],
                   task_key: str | None, max_runs: int) -> RunScores:
        """One score per run matching ``filter`` (and among ``runs``, if named): its
        ``summary`` of ``series`` (:data:`SCORE_SUMMARIES`), with its group key (values of
        ``group_by``) and task (value of ``task_key``), by run name. Runs without the series
        (or without a value) are counted but get no score. At most ``max_runs`` runs, by name
        (``truncated`` says when more matched)."""
        if summary not in SCORE_SUMMARIES:
            raise QueryError(f"unknown summary {summary!r}; one of {', '.join(SCORE_SUMMARIES)}")
        if task_key is not None and task_key in group_by:
            raise QueryError(f"{task_key!r} is the task key; group by other keys (each group "
                             "is scored over its tasks)")
        paths = [*group_by, *([task_key] if task_key else [])]
        with self.db.read() as tx:
            project_id = read.project_id(tx, workspace, project)
            compiler = Compiler(tx, project_id, f"{workspace}/{project}")
            name = compiler.check_series(series)
            matched, truncated, total, values = self._grouped_runs(
                tx, compiler, project_id, filter, runs, paths,
                {"attr": "sys/name", "dir": "asc"}, max_runs)
            ids = [run_id for run_id, _ in matched]
            scores: dict[int, float]
            if summary == "last10" and not name.rl:
                owned = read.series_of_runs(tx, ids, name)
                scores = read.standard_tail_means(
                    tx, {run_id: ids_[0] for run_id, ids_ in owned.items()},
                    RL_LAST_EPISODES)
            else:
                fn = "last" if summary == "last10" else summary
                found = read.expression_values(tx, ids, [compiler.series_value(name, fn)])
                scores = {run_id: row[0] for run_id, row in found.items()
                          if row[0] is not None and row[0] == row[0]}

        def value(run_id: int, run_name: str, path: str) -> Any:
            return run_name if path == "sys/name" else values.get(run_id, {}).get(path)

        return RunScores(
            series=name, names=[run_name for _, run_name in matched],
            keys=[tuple(value(i, n, p) for p in group_by) for i, n in matched],
            tasks=[value(i, n, task_key) if task_key else None for i, n in matched],
            scores=[scores.get(run_id) for run_id, _ in matched], matched=total,
            truncated=truncated)

    # --------------------------------------------------------- keys and sessions

    def add_key(self, key: KeyRecord) -> bool:
        """Store a new key (its hash); False when its prefix is taken."""
        with self.db.write() as tx:
            return keys.add_key(tx, key)

    def find_key(self, prefix: str) -> KeyRecord | None:
        with self.db.read() as tx:
            return keys.find_key(tx, prefix)

    def key_records(self) -> list[KeyRecord]:
        """Every key, revoked and expired ones too, oldest first."""
        with self.db.read() as tx:
            return keys.key_records(tx)

    def any_key(self) -> bool:
        """Whether a key was ever made in this database (then every request needs one)."""
        with self.db.read() as tx:
            return keys.any_key(tx)

    def revoke_key(self, prefix: str) -> KeyRecord | None:
        """Revoke the key (and end its dashboard sessions); the key as it is now, or None if
        there is no such key."""
        with self.db.write() as tx:
            keys.revoke_key(tx, prefix, time.time_ns())
            return keys.find_key(tx, prefix)

    def touch_key(self, prefix: str, now: int) -> None:
        """Record that the key was used at ``now``."""
        with self.db.write() as tx:
            keys.touch_key(tx, prefix, now)

    def add_session(self, token_hash: str, prefix: str, binding: str | None,
                    expires_ns: int) -> None:
        """A dashboard session of the key ``prefix`` (expired ones are forgotten now)."""
        now = time.time_ns()
        with self.db.write() as tx:
            keys.purge_sessions(tx, now)
            keys.add_session(tx, token_hash, prefix, binding, now, expires_ns)

    def find_session(self, token_hash: str
                     ) -> tuple[str, str | None, KeyRecord | None] | None:
        """A live session's key prefix, binding and key (None for the server's own key, or a
        key since deleted); None when the session is unknown or expired. One read: the
        dashboard's every request asks."""
        with self.db.read() as tx:
            found = keys.find_session(tx, token_hash, time.time_ns())
            if found is None:
                return None
            return found[0], found[1], keys.find_key(tx, found[0])

    def end_session(self, token_hash: str) -> None:
        with self.db.write() as tx:
            keys.end_session(tx, token_hash)

    # ---------------------------------------------------------------- helpers

    @staticmethod
    def _buckets_of(tx: Tx, specs: list[SeriesSpec], n: int, compact: bool
                    ) -> list[dict[str, Any]]:
        """Each series' buckets over its own [start, end], spelt (compact: see
        :meth:`many_buckets`)."""
        return [{"series_id": series_id, "start": start, "end": end,
                 **views.spelt_buckets(views.compact_raw(
                     read.buckets(tx, [series_id], n, start, end), compact))}
                for series_id, start, end in specs]

    @staticmethod
    def _grouped_runs(tx: Tx, compiler: Compiler, project_id: int, filter: Any,
                      runs: list[str] | None, paths: list[str], order_by: Any, max_runs: int
                      ) -> tuple[list[tuple[int, str]], bool, int, dict[int, dict[str, Any]]]:
        """The first ``max_runs`` runs matching ``filter`` (and among ``runs``, if named) in
        ``order_by``'s order, whether more matched, how many did, and their values of
        ``paths`` (config keys or sys/name, checked against the project)."""
        for path in paths:
            if path.startswith("sys/") and path != "sys/name":
                raise QueryError(f"group by config keys or sys/name, not {path!r}")
            compiler.attribute_kinds(path)
        conditions = [filter] if filter is not None else []
        if runs is not None:
            conditions.append({"attr": "sys/name", "op": "in", "value": runs or [""]})
        where = compiler.condition({"and": conditions}) if conditions else None
        key, descending = compiler.order_key(order_by)
        matched = read.matching_run_ids(tx, project_id, where, key, descending, max_runs + 1)
        truncated = len(matched) > max_runs
        matched = matched[:max_runs]
        total = read.count_runs(tx, project_id, where) if truncated else len(matched)
        found = read.attribute_values(tx, [run_id for run_id, _ in matched],
                                      [p for p in paths if p != "sys/name"])
        return matched, truncated, total, found

    @staticmethod
    def _series_of(tx: Tx, workspace: str, project: str, run_name: str,
                   series_ids: list[int]) -> None:
        """NotFound unless every one of ``series_ids`` is a series of the run."""
        run = read.run(tx, workspace, project, run_name)
        known = read.known_series(tx, run.id, series_ids)
        unknown = sorted(set(series_ids) - known)
        if unknown:
            raise NotFound(f"run {workspace}/{project}/{run_name} has no series "
                           f"{', '.join(map(str, unknown[:10]))}")

    @staticmethod
    def _rl_series_ids(tx: Tx, workspace: str, project: str, run_name: str, metric: str,
                       scale: str | None, evaluation: bool | None, environment: str | None
                       ) -> list[int]:
        run = read.run(tx, workspace, project, run_name)
        return [series_id for series_id, series_scale, env, labels, _
                in read.rl_series(tx, run.id, metric)
                if (scale is None or series_scale == scale)
                and (environment is None or env == environment)
                and (evaluation is None
                     or (json.loads(labels).get("evaluation") == "true") == evaluation)]


"""Every query the server answers, as functions of a read transaction (:class:`.database.Tx`).

They return rows, records and point arrays; :mod:`.views` turns those into answers and
:class:`~metrana.server.store.Store` puts the two together, one transaction per answer (on
PostgreSQL a snapshot: the several queries of a chart see one state of the database).

- **Runs and series** come from the per-series aggregates the writer keeps (count, min, max,
  sum, last point), so listing runs or series never reads a point.
- **Points** come from the chunks that overlap the asked steps (:mod:`.chunks`), decoded and
  cut to the range; a page of points decodes only the chunks it needs.
- **Buckets** (:mod:`.buckets`) reduce the block statistics stored beside each chunk, or, for
  a range of few points, the points themselves.
- **A project's runs, filtered and ordered** are one SQL statement compiled from the request's
  expression trees (:mod:`.filters`), paged by keyset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ..errors import NotFound, QueryError
from ..ingest import INT64_MAX
from ..point_arrays import PointArrays
from .buckets import aggregate, bucket_points, needs_points
from .chunks import BLOCK_DTYPE, BLOCK_POINTS, Blocks, decode_blocks, decode_points
from .database import Tx
from .filters import Compiled, SeriesName, after_cursor
from .groups import RunBuckets, bucket_index, sums_to_means
from .views import RunRow

__all__ = ["LISTING_COLUMNS", "SERIES_COLUMNS", "SUMMARY_COLUMNS", "attribute_samples",
           "attribute_values", "attributes_of", "buckets", "count_runs", "expression_values",
           "find_project", "find_run", "known_series", "matching_run_ids", "points",
           "points_after", "project_attributes", "project_id", "project_metrics",
           "project_run_count", "project_runs", "rl_points_series", "rl_series", "run",
           "run_bucket_means", "run_ids", "run_list", "runs_page", "series_activity",
           "series_extent", "series_listing", "series_of_run", "series_of_runs",
           "standard_points_series", "standard_series_id", "standard_tail_means", "summary_rows",
           "tags_of"]

SERIES_COLUMNS = ("id, kind, metric_name, scale, labels, environment_id, has_episode, episode, "
                  "ordering, point_count, valid_count, x_min, x_max, minor_max, vmin, vmax, "
                  "vsum, last_x, last_minor, last_t, last_value, last_kind, last_activity_ns")
SUMMARY_COLUMNS = ("point_count", "vmin", "vmax", "vsum", "valid_count", "last_value",
                   "last_kind")
_RUN = ("SELECT runs.id, workspace, project, run_name, experiment, runs.created_ns, "
        "runs.closed_ns, aggregation_rules FROM runs "
        "JOIN projects ON projects.id = runs.project_id")
_IN_ONE_QUERY = 500  # chunk ids per query when reading their points


# ------------------------------------------------------------------------ runs, projects


def _run_row(row: tuple[Any, ...]) -> RunRow:
    return RunRow(int(row[0]), row[1], row[2], row[3], row[4], int(row[5]),
                  None if row[6] is None else int(row[6]), row[7])


def find_run(tx: Tx, workspace: str, project: str, run_name: str, *, lock: str = ""
             ) -> RunRow | None:
    """The run named so, or None: the one lookup of a run by its names (reads and writes;
    ``lock``: a locking clause for a writer)."""
    row = tx.one(f"{_RUN} WHERE workspace = ? AND project = ? AND run_name = ?{lock}",
                 (workspace, project, run_name))
    return None if row is None else _run_row(row)


def run(tx: Tx, workspace: str, project: str, run_name: str) -> RunRow:
    """The run named so; NotFound saying which when there is none."""
    found = find_run(tx, workspace, project, run_name)
    if found is None:
        raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
    return found


def find_project(tx: Tx, workspace: str, project: str) -> int | None:
    row = tx.one("SELECT id FROM projects WHERE workspace = ? AND project = ?",
                 (workspace, project))
    return None if row is None else int(row[0])


def project_id(tx: Tx, workspace: str, project: str) -> int:
    """The project's id; NotFound when there is none."""
    found = find_project(tx, workspace, project)
    if found is None:
        raise NotFound(f"project {workspace}/{project} does not exist")
    return found


def run_list(tx: Tx, workspaces: Iterable[str] | None = None
             ) -> list[tuple[RunRow, int | None, int, int]]:
    """Every run (of ``workspaces``, when given), newest first, with its series' latest
    write, series count and point count."""
    where, args = ("", []) if workspaces is None else tx.among("workspace", sorted(workspaces))
    rows = tx.all(
        "SELECT runs.id, workspace, project, run_name, experiment, runs.created_ns, "
        "runs.closed_ns, aggregation_rules, MAX(series.last_activity_ns), COUNT(series.id), "
        "COALESCE(SUM(series.point_count), 0) FROM runs "
        "JOIN projects ON projects.id = runs.project_id "
        "LEFT JOIN series ON series.run_id = runs.id "
        + (f"WHERE {where} " if where else "") +
        "GROUP BY runs.id, workspace, project, run_name, experiment, runs.created_ns, "
        "runs.closed_ns, aggregation_rules ORDER BY runs.created_ns DESC, runs.id DESC", args)
    return [(_run_row(r), r[8], int(r[9]), int(r[10])) for r in rows]


def run_ids(tx: Tx, project_id: int, names: set[str], project: str) -> dict[str, int]:
    """The ids of the project's runs named so; NotFound naming those it does not have."""
    clause, args = tx.among("run_name", sorted(names))
    found = {str(r[1]): int(r[0]) for r in tx.all(
        f"SELECT id, run_name FROM runs WHERE project_id = ? AND {clause}", (project_id, *args))}
    missing = sorted(names - set(found))
    if missing:
        raise NotFound(f"project {project} has no run {', '.join(map(repr, missing[:10]))}")
    return found


def project_runs(tx: Tx, project_id: int) -> dict[str, int]:
    """Every run of the project: its id by name."""
    return {str(r[1]): int(r[0]) for r in tx.all(
        "SELECT id, run_name FROM runs WHERE project_id = ?", (project_id,))}


def attributes_of(tx: Tx, run_id: int) -> list[tuple[str, str, str]]:
    """A run's attributes: (path, kind, JSON value), by path."""
    return [(str(r[0]), str(r[1]), str(r[2])) for r in tx.all(
        "SELECT path, kind, value FROM attributes WHERE run_id = ? ORDER BY path", (run_id,))]


# ---------------------------------------------------------------------------- series


def series_of_run(tx: Tx, run_id: int, since_ns: int | None = None) -> list[tuple[Any, ...]]:
    """A run's series (:data:`SERIES_COLUMNS` rows) in id order; with ``since_ns``, only
    those written after it."""
    if since_ns is None:
        return tx.all(f"SELECT {SERIES_COLUMNS} FROM series WHERE run_id = ? ORDER BY id",
                      (run_id,))
    return tx.all(f"SELECT {SERIES_COLUMNS} FROM series WHERE run_id = ? "
                  "AND last_activity_ns > ? ORDER BY id", (run_id, since_ns))


LISTING_COLUMNS = ("run_id, kind, metric_name, scale, labels, environment_id, has_episode, "
                   "episode, point_count, x_min, x_max, last_t")


def series_listing(tx: Tx, run_ids: list[int]) -> list[tuple[Any, ...]]:
    """The series of these runs (:data:`LISTING_COLUMNS` rows), run by run, in id order."""
    if not run_ids:
        return []
    clause, args = tx.among("run_id", sorted(run_ids))
    return tx.all(f"SELECT {LISTING_COLUMNS} FROM series WHERE {clause} ORDER BY run_id, id",
                  args)


def series_activity(tx: Tx, run_id: int) -> int | None:
    """When any series of the run was last written (server time, ns)."""
    row = tx.one("SELECT MAX(last_activity_ns) FROM series WHERE run_id = ?", (run_id,))
    return None if row is None or row[0] is None else int(row[0])


def known_series(tx: Tx, run_id: int, series_ids: Iterable[int]) -> set[int]:
    """Which of these series ids are series of the run."""
    clause, args = tx.among("id", sorted(set(series_ids)))
    return {int(row[0]) for row in tx.all(
        f"SELECT id FROM series WHERE run_id = ? AND {clause}", (run_id, *args))}


def rl_series(tx: Tx, run_id: int, metric: str) -> list[tuple[int, str, str, str, int | None]]:
    """A run's RL series of one metric, in id order: (id, scale, environment, labels (JSON),
    episode or None)."""
    return [(int(r[0]), str(r[1]), str(r[2]), str(r[5]), int(r[4]) if r[3] else None)
            for r in tx.all("SELECT id, scale, environment_id, has_episode, episode, labels "
                            "FROM series WHERE run_id = ? AND kind = 'rl' AND metric_name = ? "
                            "ORDER BY id", (run_id, metric))]


def standard_series_of(tx: Tx, run_id: int, metric: str) -> list[tuple[int, str, str]]:
    """A run's standard series of one metric, in id order: (id, scale, labels (JSON))."""
    return [(int(r[0]), str(r[1]), str(r[2]))
            for r in tx.all("SELECT id, scale, labels FROM series WHERE run_id = ? AND "
                            "kind = 'standard' AND metric_name = ? ORDER BY id", (run_id, metric))]


def standard_series_id(tx: Tx, run_id: int, name: SeriesName) -> int | None:
    row = tx.one("SELECT id FROM series WHERE run_id = ? AND kind = 'standard' AND "
                 "metric_name = ? AND scale = ? AND labels = ?",
                 (run_id, name.metric, name.scale, name.labels))
    return None if row is None else int(row[0])


def standard_points_series(tx: Tx, project_id: int, project: str,
                           items: list[tuple[str, SeriesName]]) -> list[dict[str, Any]]:
    """The standard series a ``points`` request names (run, series), in its order: their ids
    and positions. QueryError naming those none of the runs has."""
    runs = run_ids(tx, project_id, {run_name for run_name, _ in items}, project)
    out: list[dict[str, Any]] = []
    found: dict[str, bool] = {}
    for position, (run_name, name) in enumerate(items):
        series_id = standard_series_id(tx, runs[run_name], name)
        if series_id is not None:
            out.append({"item": position, "id": series_id})
            found[name.describe()] = True
        else:
            found.setdefault(name.describe(), False)
    unknown = [described for described, yes in found.items() if not yes]
    if unknown:
        metrics = sorted({name.metric for _, name in items if not found[name.describe()]})
        clause, args = tx.among("run_id", sorted(runs.values()))
        names, name_args = tx.among("metric_name", metrics)
        rl = [str(r[0]) for r in tx.all(
            f"SELECT DISTINCT metric_name FROM series WHERE kind = 'rl' AND {clause} AND "
            f"{names} ORDER BY metric_name", (*args, *name_args))]
        if rl:
            raise QueryError(
                f"{', '.join(map(repr, rl))} {'is an RL metric' if len(rl) == 1 else 'are RL metrics'}"
                " (logged per environment and episode): read its points with "
                "fetch_rl_env_float_series(run, metric) or its band across environments with "
                "aggregate_rl_env_series (metrana.query); over HTTP, the points route with "
                "\"rl\": true")
        raise QueryError(f"unknown series {', '.join(unknown)}: none of the runs asked for "
                         "logged it")
    return out


def rl_points_series(tx: Tx, project_id: int, project: str,
                     items: list[tuple[str, str, str | None]]) -> list[dict[str, Any]]:
    """The RL series a ``points`` request names (run, metric, scale or None for any), in its
    order, each item's in id order (every environment and episode): their ids and what the
    client needs to label them. QueryError for a metric none of the runs has."""
    runs = run_ids(tx, project_id, {run_name for run_name, _, _ in items}, project)
    out: list[dict[str, Any]] = []
    found: set[str] = set()
    for position, (run_name, metric, scale) in enumerate(items):
        for series_id, series_scale, env, labels, episode in rl_series(tx, runs[run_name],
                                                                        metric):
            if scale is not None and series_scale != scale:
                continue
            out.append({"item": position, "id": series_id, "environment": env,
                        "episode": episode, "scale": series_scale, "labels": json.loads(labels)})
            found.add(metric)
    for _, metric, _ in items:
        if metric not in found:
            raise QueryError(f"no run named here has an RL series {metric!r}")
    return out


# ---------------------------------------------------------------------------- points


def _chunk_rows(tx: Tx, series_ids: list[int], lo: int, hi: int
                ) -> list[tuple[int, int, int, int, bytes]]:
    """(id, n, first step, last step, block statistics) of the chunks overlapping [lo, hi],
    by first step."""
    clause, args = tx.among("series_id", series_ids)
    return [(int(r[0]), int(r[1]), int(r[2]), int(r[3]), bytes(r[4])) for r in tx.all(
        f"SELECT id, n, x_first, x_last, blocks FROM chunks WHERE {clause} "
        "AND x_first <= ? AND x_last >= ? ORDER BY x_first, id", (*args, hi, lo))]


def _chunk_points(tx: Tx, chunk_ids: list[int], lo: int, hi: int) -> list[PointArrays]:
    """Each chunk's points within [lo, hi], in (x, minor) order; one entry per chunk."""
    parts = []
    for start in range(0, len(chunk_ids), _IN_ONE_QUERY):
        clause, args = tx.among("id", chunk_ids[start:start + _IN_ONE_QUERY])
        for (blob,) in tx.all(f"SELECT data FROM chunks WHERE {clause}", args):
            arrays = decode_points(bytes(blob))
            inside = (arrays.x >= lo) & (arrays.x <= hi)
            if not inside.all():
                arrays = arrays.take(inside)
            if arrays.n:
                parts.append(arrays.in_step_order())
    return parts


def _points_of_chunks(tx: Tx, chunk_ids: list[int], lo: int, hi: int) -> PointArrays:
    """The points of these chunks within [lo, hi], in (x, minor) order."""
    parts = _chunk_points(tx, chunk_ids, lo, hi)
    if not parts:
        return PointArrays.empty()
    return PointArrays.concat(parts).in_step_order()


def _series_range(tx: Tx, series_ids: list[int], start: int | None, end: int | None
                  ) -> tuple[int, int] | None:
    """[start, end], an open end replaced by the series' first or last step; None if empty."""
    clause, args = tx.among("id", series_ids)
    row = tx.one(f"SELECT MIN(x_min), MAX(x_max) FROM series WHERE {clause}", args)
    if row is None or row[0] is None:
        return None
    lo = int(row[0]) if start is None else start
    hi = int(row[1]) if end is None else end
    return (lo, hi) if lo <= hi else None


def points(tx: Tx, series_id: int, start: int | None, end: int | None) -> PointArrays:
    """Points of one series in step order; ``start``/``end`` bound the (major) step."""
    span = _series_range(tx, [series_id], start, end)
    if span is None:
        return PointArrays.empty()
    rows = _chunk_rows(tx, [series_id], *span)
    return _points_of_chunks(tx, [r[0] for r in rows], *span)


def points_after(tx: Tx, series_id: int, after: tuple[int, int] | None, limit: int
                 ) -> PointArrays:
    """At most ``limit`` points of one series after the (step, minor step) ``after``, in
    order: one page of ``points``. Only the chunks the page needs are decoded (chunks of
    several sessions may overlap in steps, so every chunk starting before the page's last
    step is read), so paging through a series reads it once."""
    lo = -(2**63) if after is None else after[0]
    rows = _chunk_rows(tx, [series_id], lo, INT64_MAX)
    taken, hi = 0, lo
    for row in rows:  # ordered by first step
        if taken >= limit and row[2] > hi:
            break
        if row[2] > lo:  # every point of this chunk comes after the cursor
            taken += row[1]
        hi = max(hi, row[3])
    arrays = _points_of_chunks(tx, [r[0] for r in rows if r[2] <= hi], lo, hi)
    if after is not None and arrays.n:
        later = (arrays.x > after[0]) | ((arrays.x == after[0]) & (arrays.minor > after[1]))
        arrays = arrays.take(later)
    return arrays.take(slice(0, limit))


def _no_blocks() -> Blocks:
    empty_i = np.empty(0, np.int64)
    empty_f = np.empty(0, np.float64)
    return Blocks(empty_i, empty_i, empty_i, empty_i, empty_i, empty_f, empty_f, empty_f,
                  empty_f, empty_f)


def buckets(tx: Tx, series_ids: list[int], n: int, start: int | None, end: int | None, *,
            spread: bool = False, merged: bool = False) -> dict[str, Any]:
    """At most ``n`` buckets over [start, end] of one series (or, with ``spread``, of
    several at once: the RL band across environments).

    ``merged`` (the writers of a log_distributed series, whose steps coincide): past
    :data:`MERGED_POINTS` points in the range, fewer buckets, so that each writer has a block
    (128 points) per bucket and the buckets come from block statistics — a read of 1M merged
    points costs what one of a plain series does, not a decode of every point."""
    span = _series_range(tx, series_ids, start, end)
    if span is None:
        return aggregate(_no_blocks(), 0, 0, 1, spread=spread)
    lo, hi = span
    rows = _chunk_rows(tx, series_ids, lo, hi)
    if merged:  # the points in [lo, hi]: each chunk's share of its steps in the range
        inside = sum(r[1] * (min(hi, r[3]) - max(lo, r[2]) + 1) / (r[3] - r[2] + 1)
                     for r in rows)
        if inside > MERGED_POINTS:
            n = max(1, min(n, int(inside) // (len(series_ids) * BLOCK_POINTS)))
    if needs_points(sum(r[1] for r in rows), n, len(series_ids), every_bucket=spread):
        return bucket_points(_points_of_chunks(tx, [r[0] for r in rows], lo, hi), lo, hi, n,
                             spread=spread)
    inner = [r for r in rows if r[2] >= lo and r[3] <= hi]
    edges = [r[0] for r in rows if r[2] < lo or r[3] > hi]
    blocks = [decode_blocks([r[4] for r in inner])] if inner else []
    # Chunks cut by the range's ends: blocks of their points inside it, chunk by chunk (a
    # block must never span two chunks: it would carry points from far away).
    blocks += [Blocks.of_points(part, BLOCK_POINTS) for part in _chunk_points(tx, edges, lo, hi)]
    return aggregate(Blocks.concat(blocks) if blocks else _no_blocks(), lo, hi, n, spread=spread)


MERGED_POINTS = 50_000  # points a merged read decodes at most (~25 ms); more: block statistics


def run_bucket_means(tx: Tx, series_by_run: list[list[int]], lo: int, hi: int, n: int
                     ) -> RunBuckets:
    """Per run (each a list of its series: one, or an RL metric's environments) the mean of
    its points in each of ``n`` equal-width buckets over [lo, hi] (:mod:`.groups`). The
    chunks of every run are listed in one query; a run of at most 32 points a bucket is
    reduced from its points, a longer one from its block statistics, each block spread over
    the buckets its steps span (and the points of chunks cut by the range's ends, or holding
    a block that spans many buckets: a gap in the steps). 30 runs of 100,000 points in 1,000
    buckets: 30 ms from blocks, 210 from their points (decompressing them is most of it)."""
    means = np.full((len(series_by_run), n), np.nan)
    owner = {series_id: k for k, ids in enumerate(series_by_run) for series_id in ids}
    if not owner or hi < lo:
        return RunBuckets(means)
    width = (hi - lo + 1) / n
    rows_by_run: list[list[tuple[Any, ...]]] = [[] for _ in series_by_run]
    ids = sorted(owner)
    for start in range(0, len(ids), _IN_ONE_QUERY):
        clause, args = tx.among("series_id", ids[start:start + _IN_ONE_QUERY])
        for row in tx.all(f"SELECT id, series_id, n, x_first, x_last, blocks FROM chunks "
                          f"WHERE {clause} AND x_first <= ? AND x_last >= ?", (*args, hi, lo)):
            rows_by_run[owner[int(row[1])]].append(row)
    for k, rows in enumerate(rows_by_run):
        if not rows:
            continue
        sums = np.zeros(n)
        valid = np.zeros(n)
        from_points = [int(r[0]) for r in rows]
        inner = [r for r in rows if int(r[3]) >= lo and int(r[4]) <= hi]
        if inner and not needs_points(sum(int(r[2]) for r in rows), n):
            blobs = [bytes(r[5]) for r in inner]
            blocks = decode_blocks(blobs)
            chunk = np.repeat(np.arange(len(inner)), [len(b) // BLOCK_DTYPE.itemsize
                                                       for b in blobs])
            spans = (bucket_index(blocks.x_last, lo, width, n)
                     - bucket_index(blocks.x_first, lo, width, n))
            wide = np.zeros(len(inner), np.bool_)
            wide[chunk[spans >= SPREAD_BUCKETS]] = True
            _spread_blocks(sums, valid, blocks.take(~wide[chunk]), lo, width, n)
            done = {int(r[0]) for r, w in zip(inner, wide.tolist(), strict=True) if not w}
            from_points = [i for i in from_points if i not in done]
        for part in _chunk_points(tx, from_points, lo, hi):
            ok = ~(np.isnan(part.v) | part.missing)
            index = bucket_index(part.x[ok], lo, width, n)
            sums += np.bincount(index, part.v[ok], n)
            valid += np.bincount(index, None, n)
        means[k] = sums_to_means(sums, valid)
    return RunBuckets(means)


SPREAD_BUCKETS = 8  # buckets a block may span and be spread over (else its chunk's points)


def _spread_blocks(sums: npt.NDArray[np.float64], valid: npt.NDArray[np.float64],
                   blocks: Blocks, lo: int, width: float, n: int) -> None:
    """Add each block's sum and count of values to the buckets its steps [x_first, x_last]
    span, in proportion to the steps of it each holds (a block inside one bucket: whole)."""
    has = blocks.valid > 0
    a, b = blocks.x_first[has], blocks.x_last[has]
    total, count = blocks.vsum[has], blocks.valid[has].astype(np.float64)
    first = bucket_index(a, lo, width, n)
    last = bucket_index(b, lo, width, n)
    steps = (b - a + 1).astype(np.float64)

    def start(bucket: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """A bucket's first step (bucket_grid's), as a float; past the last: hi + 1."""
        out: npt.NDArray[np.float64] = lo + np.ceil(bucket * width)
        return out

    for d in range(int((last - first).max(initial=0)) + 1):
        on = first + d <= last
        bucket = first[on] + d
        inside = np.minimum(b[on] + 1, start(bucket + 1)) - np.maximum(a[on], start(bucket))
        share = np.where(first[on] == last[on], 1.0, np.clip(inside, 0, None) / steps[on])
        sums += np.bincount(bucket, total[on] * share, n)
        valid += np.bincount(bucket, count[on] * share, n)


def series_extent(tx: Tx, series_ids: list[int]) -> tuple[int, int] | None:
    """The first and last step of these series, from their aggregates."""
    if not series_ids:
        return None
    found: tuple[int, int] | None = None
    for start in range(0, len(series_ids), _IN_ONE_QUERY):
        clause, args = tx.among("id", series_ids[start:start + _IN_ONE_QUERY])
        row = tx.one(f"SELECT MIN(x_min), MAX(x_max) FROM series WHERE {clause}", args)
        if row is None or row[0] is None:
            continue
        lo, hi = int(row[0]), int(row[1])
        found = (lo, hi) if found is None else (min(found[0], lo), max(found[1], hi))
    return found


def series_of_runs(tx: Tx, run_ids: list[int], name: SeriesName) -> dict[int, list[int]]:
    """Each run's series of ``name`` (resolved: standard, or an RL metric's environments and
    episodes), by run id."""
    out: dict[int, list[int]] = {}
    for start in range(0, len(run_ids), _IN_ONE_QUERY):
        clause, args = tx.among("run_id", run_ids[start:start + _IN_ONE_QUERY])
        for series_id, run_id in tx.all(
                f"SELECT id, run_id FROM series WHERE {clause} AND kind = ? AND "
                "metric_name = ? AND scale = ? AND labels = ?",
                (*args, "rl" if name.rl else "standard", name.metric, name.scale, name.labels)):
            out.setdefault(int(run_id), []).append(int(series_id))
    return out


def standard_tail_means(tx: Tx, series_ids: dict[int, int], k: int) -> dict[int, float]:
    """Per run (``series_ids``: run id -> its standard series), the mean of the values of the
    series' last ``k`` points (NaN and value-less points skipped, as an RL tail does); runs
    without one are left out. Only the chunks that can hold those points are read: the
    latest chunks (by last step) until they hold ``k`` points give a step below which none of
    the last ``k`` can lie (sessions' chunks may overlap, so every chunk reaching it is read)."""
    out: dict[int, float] = {}
    for run_id, series_id in series_ids.items():
        low = None
        held = 0
        for n, x_first in tx.all("SELECT n, x_first FROM chunks WHERE series_id = ? "
                                 "ORDER BY x_last DESC LIMIT ?", (series_id, k)):
            held += int(n)
            low = int(x_first) if low is None else min(low, int(x_first))
            if held >= k:
                break
        if low is None:
            continue
        rows = _chunk_rows(tx, [series_id], low, INT64_MAX)
        tail = _points_of_chunks(tx, [r[0] for r in rows], low, INT64_MAX).take(slice(-k, None))
        values = tail.v[~(tail.missing | np.isnan(tail.v))]
        if values.size:
            out[run_id] = float(values.mean())
    return out


def project_attributes(tx: Tx, project_id: int) -> list[tuple[str, str, int, int]]:
    """The project's attribute paths: (path, kind, distinct values, runs having it)."""
    return [(str(r[0]), str(r[1]), int(r[2]), int(r[3])) for r in tx.all(
        "SELECT a.path, a.kind, COUNT(DISTINCT a.value), COUNT(*) FROM attributes a "
        "JOIN runs ON runs.id = a.run_id WHERE runs.project_id = ? GROUP BY a.path, a.kind "
        "ORDER BY a.path", (project_id,))]


def attribute_samples(tx: Tx, project_id: int, paths: list[str], limit: int
                      ) -> dict[str, list[str]]:
    """Up to ``limit`` distinct stored values (JSON text) of each of ``paths``."""
    out: dict[str, list[str]] = {}
    for path in paths:
        out[path] = [str(r[0]) for r in tx.all(
            "SELECT DISTINCT a.value FROM attributes a JOIN runs ON runs.id = a.run_id "
            "WHERE runs.project_id = ? AND a.path = ? ORDER BY a.value LIMIT ?",
            (project_id, path, limit))]
    return out


def project_metrics(tx: Tx, project_id: int) -> list[tuple[str, str, str, str, int]]:
    """The project's metrics: (kind, metric, scale, labels, runs logging it)."""
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4])) for r in tx.all(
        "SELECT s.kind, s.metric_name, s.scale, s.labels, COUNT(DISTINCT s.run_id) FROM series s "
        "JOIN runs ON runs.id = s.run_id WHERE runs.project_id = ? "
        "GROUP BY s.kind, s.metric_name, s.scale, s.labels ORDER BY s.metric_name, s.kind, "
        "s.scale, s.labels", (project_id,))]


def project_run_count(tx: Tx, project_id: int) -> int:
    row = tx.one("SELECT COUNT(*) FROM runs WHERE project_id = ?", (project_id,))
    return int(row[0]) if row else 0


# ----------------------------------------------------------------- a project's runs


def runs_page(tx: Tx, project_id: int, where: Compiled | None, key: Compiled, descending: bool,
              cursor: tuple[Any, int] | None, limit: int, status: Compiled, offset: int = 0
              ) -> list[tuple[Any, ...]]:
    """One page of the project's runs matching ``where``, ordered by ``key`` (nulls last)
    then id, after ``cursor`` (or skipping ``offset`` rows: a table scrolled far down):
    (id, name, experiment, created, closed, latest series write, sort key, status)."""
    sql = ("SELECT runs.id, runs.run_name, runs.experiment, runs.created_ns, runs.closed_ns, "
           "(SELECT MAX(s.last_activity_ns) FROM series s WHERE s.run_id = runs.id), "
           f"{key.sql} AS sort_key, {status.sql} FROM runs WHERE runs.project_id = ?")
    args: list[Any] = [*key.args, *status.args, project_id]
    if where is not None:
        sql += f" AND {where.sql}"
        args += where.args
    if cursor is not None:
        after = after_cursor(key, descending, cursor)
        sql += f" AND {after.sql}"
        args += after.args
    sql += f" ORDER BY sort_key {'DESC' if descending else 'ASC'} NULLS LAST, runs.id LIMIT ?"
    if offset:
        sql += " OFFSET ?"
        return tx.all(sql, (*args, limit, offset))
    return tx.all(sql, (*args, limit))


def tags_of(tx: Tx, ids: list[int]) -> dict[int, list[str]]:
    """Each run's tags (its ``sys/tags`` string set), by run id."""
    return {run_id: values["sys/tags"] for run_id, values
            in attribute_values(tx, ids, ["sys/tags"]).items()}


def count_runs(tx: Tx, project_id: int, where: Compiled | None) -> int:
    """How many of the project's runs match ``where``."""
    sql = "SELECT COUNT(*) FROM runs WHERE runs.project_id = ?"
    args: list[Any] = [project_id]
    if where is not None:
        sql += f" AND {where.sql}"
        args += where.args
    row = tx.one(sql, args)
    return int(row[0]) if row else 0


def matching_run_ids(tx: Tx, project_id: int, where: Compiled | None, key: Compiled,
                     descending: bool, limit: int) -> list[tuple[int, str]]:
    """The first ``limit`` runs matching ``where`` in the order ``key`` then id: (id, name)."""
    sql = f"SELECT runs.id, runs.run_name, {key.sql} AS sort_key FROM runs WHERE " \
          "runs.project_id = ?"
    args: list[Any] = [*key.args, project_id]
    if where is not None:
        sql += f" AND {where.sql}"
        args += where.args
    sql += f" ORDER BY sort_key {'DESC' if descending else 'ASC'} NULLS LAST, runs.id LIMIT ?"
    return [(int(r[0]), str(r[1])) for r in tx.all(sql, (*args, limit))]


def expression_values(tx: Tx, ids: list[int], expressions: list[Compiled]
                      ) -> dict[int, list[Any]]:
    """Each run's values of SQL expressions over ``runs`` (compiled summaries)."""
    if not ids or not expressions:
        return {}
    out: dict[int, list[Any]] = {}
    columns = ", ".join(e.sql for e in expressions)
    args = [a for e in expressions for a in e.args]
    for start in range(0, len(ids), _IN_ONE_QUERY):
        clause, id_args = tx.among("runs.id", ids[start:start + _IN_ONE_QUERY])
        for row in tx.all(f"SELECT runs.id, {columns} FROM runs WHERE {clause}",
                          (*args, *id_args)):
            out[int(row[0])] = [None if v is None else float(v) for v in row[1:]]
    return out


def attribute_values(tx: Tx, ids: list[int], paths: list[str]) -> dict[int, dict[str, Any]]:
    """Each run's values of ``paths``, decoded (a non-finite float as a float)."""
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
            decoded = float(decoded)  # "NaN", "Infinity": how the writer stores them
        out.setdefault(int(run_id), {})[path] = decoded
    return out


def summary_rows(tx: Tx, ids: list[int], metrics: set[str]
                 ) -> dict[int, dict[tuple[str, str, str], tuple[Any, ...]]]:
    """Each run's aggregates (:data:`SUMMARY_COLUMNS`) of its standard series named
    ``metrics``, by (metric, scale, labels)."""
    out: dict[int, dict[tuple[str, str, str], tuple[Any, ...]]] = {}
    if not ids or not metrics:
        return out
    runs, run_args = tx.among("run_id", ids)
    names, name_args = tx.among("metric_name", sorted(metrics))
    for row in tx.all(f"SELECT run_id, metric_name, scale, labels, {', '.join(SUMMARY_COLUMNS)} "
                      f"FROM series WHERE kind = 'standard' AND {runs} AND {names}",
                      (*run_args, *name_args)):
        out.setdefault(int(row[0]), {})[(row[1], row[2], row[3])] = row[4:]
    return out

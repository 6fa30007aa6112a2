"""Histograms and point clouds: how they are stored, written (last write wins) and read.

A histogram or scatter series is a row of ``value_series`` (its identity, kind and axis
titles, and the summary of its last point, as the protocol's ``HistogramSeriesSummary``);
each step is one row of ``histogram_points`` or ``scatter_points``, keyed by (series, step), so
a step sent again overwrites it. Compact:

- counts are integers in the narrowest unsigned type that holds them (1, 2, 4 or 8 bytes a
  bin), zlib'd when that is smaller; densities are float64, likewise;
- edges are stored once per series and distinct edges (``histogram_edges``), and a point names
  them: a series that keeps its edges costs nothing per step for them;
- a cloud is its float64 columns, zlib'd when smaller.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import NotFound, Unprocessable
from ..value_ingest import HISTOGRAM, IncomingValues, ValuePoint
from .database import Tx

__all__ = ["HISTOGRAM", "decode_numbers", "encode_numbers", "histogram_chart", "histogram_points",
           "scatter_points", "value_at", "value_series", "value_steps", "write_values"]

_DTYPES = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<i8"), np.dtype("<f8"))
_ZLIB = 0x10


def encode_numbers(values: npt.NDArray[Any]) -> bytes:
    """Integers (>= 0) in their narrowest type, or float64: a type byte, then the numbers,
    compressed when that is smaller."""
    if values.dtype.kind == "f":
        code = 4
    else:
        top = int(values.max()) if values.size else 0
        code = 0 if top < 2**8 else 1 if top < 2**16 else 2 if top < 2**32 else 3
    raw = np.ascontiguousarray(values, dtype=_DTYPES[code]).tobytes()
    packed = zlib.compress(raw, 6)
    if len(packed) < len(raw):
        return bytes([code | _ZLIB]) + packed
    return bytes([code]) + raw


def decode_numbers(blob: bytes) -> npt.NDArray[Any]:
    code = blob[0]
    data = zlib.decompress(blob[1:]) if code & _ZLIB else blob[1:]
    array = np.frombuffer(data, dtype=_DTYPES[code & 0x0F])
    return array.astype(np.float64 if code & 0x0F == 4 else np.int64)


def _summary(point: ValuePoint) -> tuple[Any, ...]:
    """(last_count, last_min, last_max, last_sum, last_sumsq) of a histogram point."""
    count = int(point.counts.sum()) if point.counts is not None else None
    if point.stats is None:
        return (count, None, None, None, None)
    return (count, *point.stats)


def _check_kinds(tx: Tx, run_id: int, series: IncomingValues,
                 row: tuple[Any, ...] | None) -> None:
    if row is not None and row[1] != series.kind:
        raise Unprocessable(f"{series.path}: metric {series.metric_name!r} holds {row[1]} "
                            f"values in this run, not {series.kind}; a metric keeps one kind")
    if row is None and tx.one("SELECT 1 FROM series WHERE run_id = ? AND metric_name = ?",
                              (run_id, series.metric_name)) is not None:
        raise Unprocessable(f"{series.path}: metric {series.metric_name!r} holds scalar values "
                            f"in this run, not {series.kind}; a metric keeps one kind")


def write_values(tx: Tx, run_id: int, incoming: list[IncomingValues], now: int) -> int:
    """Store a run's histogram and scatter points (a step stored before is overwritten);
    returns how many were written."""
    written = 0
    for series in sorted(incoming, key=lambda s: s.identity):  # one lock order for all
        row = tx.one("SELECT id, value_kind, last_step FROM value_series WHERE run_id = ? AND "
                     "metric_name = ? AND scale = ? AND labels = ?", (run_id, *series.identity))
        _check_kinds(tx, run_id, series, row)
        if row is None:
            tx.run("INSERT INTO value_series (run_id, value_kind, metric_name, scale, labels, "
                   "meta) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                   (run_id, series.kind, *series.identity, series.meta))
            row = tx.one("SELECT id, value_kind, last_step FROM value_series WHERE run_id = ? "
                         "AND metric_name = ? AND scale = ? AND labels = ?",
                         (run_id, *series.identity))
            assert row is not None
            _check_kinds(tx, run_id, series, row)
        series_id, last_step = int(row[0]), row[2]
        if not series.points:
            continue
        if series.kind == HISTOGRAM:
            _write_histograms(tx, series_id, series.points)
        else:
            tx.many("INSERT INTO scatter_points (series_id, step, t, n, data) VALUES "
                    "(?, ?, ?, ?, ?) ON CONFLICT (series_id, step) DO UPDATE SET t = excluded.t, "
                    "n = excluded.n, data = excluded.data",
                    [(series_id, p.step, p.t, int(p.xs.shape[0]),  # type: ignore[union-attr]
                      encode_numbers(np.concatenate([a for a in (p.xs, p.ys, p.zs)
                                                     if a is not None])))
                     for p in series.points])
        last = max(series.points, key=lambda p: p.step)  # the last of equal steps
        for point in series.points:
            if point.step == last.step:
                last = point
        count = tx.one(f"SELECT COUNT(*) FROM {_TABLE[series.kind]} WHERE series_id = ?",
                       (series_id,))
        assert count is not None
        if last_step is None or last.step >= last_step:
            tx.run("UPDATE value_series SET point_count = ?, last_step = ?, last_t = ?, "
                   "last_count = ?, last_min = ?, last_max = ?, last_sum = ?, last_sumsq = ?, "
                   "last_activity_ns = ? WHERE id = ?",
                   (int(count[0]), last.step, last.t, *_summary(last), now, series_id))
        else:
            tx.run("UPDATE value_series SET point_count = ?, last_activity_ns = ? WHERE id = ?",
                   (int(count[0]), now, series_id))
        written += len(series.points)
    return written


_TABLE = {HISTOGRAM: "histogram_points", "scatter": "scatter_points",
          "scatter3d": "scatter_points"}


def _write_histograms(tx: Tx, series_id: int, points: list[ValuePoint]) -> None:
    edge_ids: dict[bytes, int] = {}
    rows = []
    for p in points:
        blob = p.edges.astype("<f8").tobytes()  # type: ignore[union-attr]
        edges_id = edge_ids.get(blob)
        if edges_id is None:
            digest = hashlib.blake2b(blob, digest_size=16).hexdigest()
            found = tx.one("SELECT id FROM histogram_edges WHERE series_id = ? AND digest = ?",
                           (series_id, digest))
            if found is None:
                tx.run("INSERT INTO histogram_edges (series_id, digest, edges) VALUES (?, ?, ?)",
                       (series_id, digest, blob))
                found = tx.one("SELECT id FROM histogram_edges WHERE series_id = ? AND "
                               "digest = ?", (series_id, digest))
                assert found is not None
            edges_id = edge_ids[blob] = int(found[0])
        values = p.counts if p.counts is not None else p.densities
        stats = p.stats or (None, None, None, None)
        rows.append((series_id, p.step, p.t, edges_id, int(p.counts is None),
                     encode_numbers(values), *stats))  # type: ignore[arg-type]
    tx.many("INSERT INTO histogram_points (series_id, step, t, edges_id, densities, data, vmin, "
            "vmax, vsum, vsumsq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_id, "
            "step) DO UPDATE SET t = excluded.t, edges_id = excluded.edges_id, densities = "
            "excluded.densities, data = excluded.data, vmin = excluded.vmin, vmax = "
            "excluded.vmax, vsum = excluded.vsum, vsumsq = excluded.vsumsq", rows)


# ---------------------------------------------------------------------------------- reads


_SERIES_COLUMNS = ("id, value_kind, metric_name, scale, labels, meta, point_count, last_step, "
                   "last_t, last_count, last_min, last_max, last_sum, last_sumsq")


def _series_row(row: Sequence[Any]) -> dict[str, Any]:
    (series_id, kind, name, scale, labels, meta, count, last_step, last_t, last_count, low,
     high, total, squares) = row
    out: dict[str, Any] = {"id": int(series_id), "kind": kind, "metric": name, "scale": scale,
                           "labels": json.loads(labels), "titles": json.loads(meta),
                           "count": int(count), "last_step": last_step, "last_t": last_t}
    if kind == HISTOGRAM:
        summary: dict[str, Any] = {"last_step": last_step, "last_count": last_count,
                                   "last_min": low, "last_max": high, "last_sum": total,
                                   "last_avg": None, "last_std": None}
        if last_count and total is not None:
            mean = total / last_count
            summary["last_avg"] = mean
            summary["last_std"] = math.sqrt(max(squares / last_count - mean * mean, 0.0))
        out["summary"] = summary
    return out


def value_series(tx: Tx, run_id: int) -> list[dict[str, Any]]:
    """A run's histogram and scatter series, with their summaries."""
    return [_series_row(row) for row in tx.all(
        f"SELECT {_SERIES_COLUMNS} FROM value_series WHERE run_id = ? ORDER BY metric_name, "
        "scale, labels", (run_id,))]


def one_series(tx: Tx, run_id: int, series_id: int) -> dict[str, Any]:
    row = tx.one(f"SELECT {_SERIES_COLUMNS} FROM value_series WHERE run_id = ? AND id = ?",
                 (run_id, series_id))
    if row is None:
        raise NotFound(f"no histogram or scatter series {series_id} in this run")
    return _series_row(row)


def find_series(tx: Tx, run_id: int, metric: str, kinds: Sequence[str]) -> dict[str, Any]:
    """A run's series of ``metric`` of one of ``kinds`` (the first by scale and labels)."""
    rows = tx.all(f"SELECT {_SERIES_COLUMNS} FROM value_series WHERE run_id = ? AND "
                  "metric_name = ? ORDER BY scale, labels", (run_id, metric))
    rows = [row for row in rows if row[1] in kinds]
    if not rows:
        raise NotFound(f"this run has no {' or '.join(kinds)} series {metric!r}")
    return _series_row(rows[0])


def _edges(tx: Tx, series_id: int) -> dict[int, npt.NDArray[np.float64]]:
    return {int(i): np.frombuffer(bytes(blob), dtype="<f8")
            for i, blob in tx.all("SELECT id, edges FROM histogram_edges WHERE series_id = ?",
                                  (series_id,))}


_POINT_COLUMNS = "step, t, edges_id, densities, data, vmin, vmax, vsum, vsumsq"


def histogram_points(tx: Tx, series_id: int, step: int | None = None) -> dict[str, Any]:
    """Every histogram of a series (or the one at ``step``), edges shared: ``edges`` lists the
    distinct edges, each point's ``edges`` is an index into it."""
    edges = _edges(tx, series_id)
    where, args = ("AND step = ?", (series_id, step)) if step is not None else ("", (series_id,))
    rows = tx.all(f"SELECT {_POINT_COLUMNS} FROM histogram_points WHERE series_id = ? {where} "
                  "ORDER BY step", args)
    order = {edges_id: i for i, edges_id in enumerate(sorted(edges))}
    points = []
    for step_, t, edges_id, densities, blob, low, high, total, squares in rows:
        values = decode_numbers(bytes(blob)).tolist()
        points.append({"step": int(step_), "t": int(t), "edges": order[int(edges_id)],
                       "counts": None if densities else values,
                       "densities": values if densities else None,
                       "stats": None if low is None else [low, high, total, squares]})
    return {"edges": [edges[i].tolist() for i in sorted(edges)], "points": points}


def scatter_points(tx: Tx, series_id: int, three_d: bool, step: int | None = None
                   ) -> list[dict[str, Any]]:
    where, args = ("AND step = ?", (series_id, step)) if step is not None else ("", (series_id,))
    out = []
    for step_, t, n, blob in tx.all(f"SELECT step, t, n, data FROM scatter_points WHERE "
                                    f"series_id = ? {where} ORDER BY step", args):
        values = decode_numbers(bytes(blob))
        n = int(n)
        point = {"step": int(step_), "t": int(t), "xs": values[:n].tolist(),
                 "ys": values[n:2 * n].tolist()}
        if three_d:
            point["zs"] = values[2 * n:].tolist()
        out.append(point)
    return out


def value_steps(tx: Tx, series: dict[str, Any]) -> list[int]:
    table = _TABLE[series["kind"]]
    return [int(r[0]) for r in tx.all(f"SELECT step FROM {table} WHERE series_id = ? "
                                      "ORDER BY step", (series["id"],))]


def value_at(tx: Tx, series: dict[str, Any], step: int) -> dict[str, Any]:
    """The histogram or cloud stored at ``step`` (404 if none)."""
    if series["kind"] == HISTOGRAM:
        answer = histogram_points(tx, series["id"], step)
        if not answer["points"]:
            raise NotFound(f"series {series['metric']!r} has no histogram at step {step}")
        point: dict[str, Any] = answer["points"][0]
        point["edges"] = answer["edges"][point["edges"]]
        return point
    points = scatter_points(tx, series["id"], series["kind"] == "scatter3d", step)
    if not points:
        raise NotFound(f"series {series['metric']!r} has no points at step {step}")
    return points[0]


def _decode_rows(blobs: list[bytes], width: int) -> npt.NDArray[np.float64]:
    """Blobs of ``width`` numbers each as one matrix: decompressed one by one, then read per
    type in one ``frombuffer`` (not one array per row)."""
    matrix = np.empty((len(blobs), width))
    by_code: dict[int, tuple[list[int], list[bytes]]] = {}
    for i, blob in enumerate(blobs):
        code = blob[0]
        rows, parts = by_code.setdefault(code & 0x0F, ([], []))
        rows.append(i)
        parts.append(zlib.decompress(blob[1:]) if code & _ZLIB else blob[1:])
    for code, (rows, parts) in by_code.items():
        matrix[rows] = np.frombuffer(b"".join(parts), dtype=_DTYPES[code]).reshape(len(rows),
                                                                                  width)
    return matrix


def histogram_chart(tx: Tx, series_id: int, columns: int) -> dict[str, Any]:
    """A distribution-over-steps chart: the steps cut into at most ``columns`` groups of
    consecutive stored steps, and per group the share of values in each bin of one value grid
    (the series' edges when it kept them; else 256 equal bins over all edges), averaged over
    the group's histograms, as integers in millionths; with each group's min, max and mean
    (from the stats when logged, else from the occupied bins)."""
    edges = _edges(tx, series_id)
    rows = tx.all("SELECT step, edges_id, densities, data, vmin, vmax, vsum FROM "
                  "histogram_points WHERE series_id = ? ORDER BY step", (series_id,))
    n = len(rows)
    if not n:
        return {"steps": [], "count": 0, "grid": [], "cells": [], "min": [], "max": [],
                "mean": [], "first": [], "last": []}
    if len(edges) == 1:
        grid = next(iter(edges.values()))
    else:
        grid = np.linspace(min(float(e[0]) for e in edges.values()),
                           max(float(e[-1]) for e in edges.values()), 257)
    steps = np.fromiter((r[0] for r in rows), np.int64, n)
    edge_ids = np.fromiter((r[1] for r in rows), np.int64, n)
    dense = np.fromiter((r[2] for r in rows), np.int64, n).astype(bool)
    stat = np.array([(np.nan if r[4] is None else r[4], np.nan if r[5] is None else r[5],
                      np.nan if r[6] is None else r[6]) for r in rows], dtype=np.float64)
    shares = np.empty((n, grid.shape[0] - 1), dtype=np.float32)
    mins, maxs, means = stat[:, 0].copy(), stat[:, 1].copy(), np.full(n, np.nan)
    for edges_id, own in edges.items():  # the steps of each distinct edges at once
        picked = np.flatnonzero(edge_ids == edges_id)
        if not picked.size:
            continue
        mass = _decode_rows([bytes(rows[i][3]) for i in picked.tolist()], own.shape[0] - 1)
        counted = np.where(dense[picked], 0.0, mass.sum(axis=1))
        if dense[picked].any():
            mass[dense[picked]] *= np.diff(own)
        whole = mass.sum(axis=1)
        scale = np.divide(1.0, whole, out=np.zeros_like(whole), where=whole > 0)
        centres = (own[:-1] + own[1:]) / 2
        with np.errstate(all="ignore"):
            means[picked] = np.where(np.isnan(stat[picked, 2]) | (counted == 0),
                                     (mass @ centres) * scale, stat[picked, 2] / counted)
        means[picked[whole == 0]] = np.nan
        unlogged = np.flatnonzero(np.isnan(stat[picked, 0]) & (whole > 0))
        if unlogged.size:  # no stats: the occupied bins' outer edges
            occupied = mass[unlogged] > 0
            mins[picked[unlogged]] = own[np.argmax(occupied, axis=1)]
            maxs[picked[unlogged]] = own[own.shape[0] - 1 - np.argmax(occupied[:, ::-1], axis=1)]
        fractions = (mass * scale[:, None]).astype(np.float32)
        if own is grid:
            shares[picked] = fractions
        else:  # proportional overlap: the CDF at the grid's edges, differenced
            cdf = np.concatenate([np.zeros((picked.size, 1), np.float32),
                                  np.cumsum(fractions, axis=1)], 1)
            at = np.interp(grid, own, np.arange(own.shape[0]))  # fractional edge positions
            low = np.clip(np.floor(at).astype(np.int64), 0, own.shape[0] - 2)
            part = (at - low).astype(np.float32)
            shares[picked] = np.diff(cdf[:, low] * (1 - part) + cdf[:, low + 1] * part, axis=1)
    groups = min(columns, n)
    bounds = (np.arange(groups + 1) * n) // groups
    starts = bounds[:-1]
    cells = np.add.reduceat(shares, starts, axis=0, dtype=np.float64) / np.diff(bounds)[:, None]
    with np.errstate(all="ignore"):
        group_min = np.fmin.reduceat(mins, starts)
        group_max = np.fmax.reduceat(maxs, starts)
        group_mean = (np.add.reduceat(np.nan_to_num(means), starts)
                      / np.add.reduceat(~np.isnan(means), starts))

    def nullable(array: npt.NDArray[Any]) -> list[float | None]:
        return [None if x != x else x for x in array.tolist()]

    return {"steps": steps, "count": n, "grid": grid, "first": steps[starts],
            "last": steps[bounds[1:] - 1], "cells": np.rint(cells * 1e6).astype(np.int64),
            "scale": 1e6, "min": nullable(group_min), "max": nullable(group_max),
            "mean": nullable(group_mean)}

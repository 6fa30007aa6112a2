"""Downsampling for charts that never hides a spike.

A chart of N pixels needs about N buckets, not millions of points. Each bucket reports the min
and max of *every* point in it (so a single spike survives), the mean, the last value, and how
many points it stands for. The work is done on block statistics (:class:`.chunks.Blocks`, 128
points each) when the range holds many points, and on the points themselves when it holds few
— so a 10M-point series costs a read of its block statistics, never of its points.

Buckets are equal-width in x over the asked range; a block belongs to the bucket of its first
x. Blocks are used only when the range holds more than 32 points a bucket (else the points
are), so a block's points lie at most a few bucket widths from where they are drawn — and each
point is counted in exactly one bucket, so min, max and count over any set of buckets are exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from ..point_arrays import PointArrays
from .chunks import BLOCK_POINTS, Blocks

__all__ = ["aggregate", "bucket_points", "needs_points", "raw_columns"]


def _json_floats(values: npt.NDArray[np.float64]) -> list[float | None]:
    """NaN means "no value" in bucket statistics: null in JSON."""
    return [None if v != v else v for v in values.tolist()]


def raw_columns(columns: PointArrays) -> dict[str, Any]:
    """Every point, as bucket columns of one point each (``raw: true``)."""
    values = columns.v.tolist()
    if columns.missing.any():
        values = [None if m else v for v, m in zip(values, columns.missing.tolist(),
                                                     strict=True)]
    return {"x": columns.x.tolist(), "t": columns.t.tolist(), "min": values, "max": values,
            "mean": values, "last": values, "count": [1] * columns.n, "raw": True}


def _bucket_index(x: npt.NDArray[np.int64], lo: int, hi: int, n: int) -> npt.NDArray[np.int64]:
    width = (hi - lo + 1) / n
    return np.minimum(((x - lo) / width).astype(np.int64), n - 1)


def aggregate(blocks: Blocks, lo: int, hi: int, n: int, *, spread: bool = False
              ) -> dict[str, Any]:
    """Reduce blocks (all inside [lo, hi]) into at most ``n`` equal-width buckets.

    ``spread`` adds ``std`` (across every value in the bucket) — the RL band across
    environments.
    """
    if blocks.n == 0:
        out: dict[str, Any] = {"x": [], "t": [], "min": [], "max": [], "mean": [], "last": [],
                               "count": [], "raw": False}
        if spread:
            out["std"] = []
        return out
    bucket = _bucket_index(blocks.x_first, lo, hi, n)
    order = np.lexsort((blocks.x_last, bucket))
    b = blocks.take(order)
    bucket = bucket[order]
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], bucket.shape[0]] - 1
    count = np.add.reduceat(b.count, starts)
    valid = np.add.reduceat(b.valid, starts)
    with np.errstate(all="ignore"):
        vmin = np.fmin.reduceat(b.vmin, starts)
        vmax = np.fmax.reduceat(b.vmax, starts)
        vsum = np.add.reduceat(b.vsum, starts)
        mean = np.where(valid > 0, vsum / np.maximum(valid, 1), np.nan)
    out = {
        "x": np.minimum.reduceat(b.x_first, starts).tolist(),
        "t": np.minimum.reduceat(b.t_first, starts).tolist(),
        "min": _json_floats(vmin),
        "max": _json_floats(vmax),
        "mean": _json_floats(mean),
        "last": [None if math.isnan(v) else v for v in b.last[ends].tolist()],
        "count": count.tolist(),
        "raw": False,
    }
    if spread:
        sumsq = np.add.reduceat(b.vsumsq, starts)
        with np.errstate(all="ignore"):
            var = np.where(valid > 0, sumsq / np.maximum(valid, 1) - mean * mean, np.nan)
        out["std"] = _json_floats(np.sqrt(np.maximum(var, 0.0)))
    return out


def bucket_points(columns: PointArrays, lo: int, hi: int, n: int, *, spread: bool = False
                  ) -> dict[str, Any]:
    """Buckets computed from points in (x, minor) order, already restricted to [lo, hi]."""
    if not spread and columns.n <= 2 * n:
        return raw_columns(columns)
    if columns.n == 0:
        return aggregate(Blocks.of_points(columns, size=1), lo, hi, n, spread=spread)
    bucket = _bucket_index(columns.x, lo, hi, n)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], columns.n] - 1
    v = columns.v
    ok = ~(np.isnan(v) | columns.missing)
    clean = np.where(ok, v, 0.0)
    with np.errstate(all="ignore"):
        valid = np.add.reduceat(ok.astype(np.int64), starts)
        vmin = np.minimum.reduceat(np.where(ok, v, np.inf), starts)
        vmax = np.maximum.reduceat(np.where(ok, v, -np.inf), starts)
        vsum = np.add.reduceat(clean, starts)
        mean = np.where(valid > 0, vsum / np.maximum(valid, 1), np.nan)
        vmin = np.where(valid > 0, vmin, np.nan)
        vmax = np.where(valid > 0, vmax, np.nan)
    last = np.where(columns.missing[ends], np.nan, v[ends])
    out: dict[str, Any] = {
        "x": columns.x[starts].tolist(),
        "t": np.minimum.reduceat(columns.t, starts).tolist(),
        "min": _json_floats(vmin),
        "max": _json_floats(vmax),
        "mean": _json_floats(mean),
        "last": _json_floats(last),
        "count": (ends - starts + 1).tolist(),
        "raw": False,
    }
    if spread:
        with np.errstate(all="ignore"):
            sumsq = np.add.reduceat(clean * clean, starts)
            var = np.where(valid > 0, sumsq / np.maximum(valid, 1) - mean * mean, np.nan)
        out["std"] = _json_floats(np.sqrt(np.maximum(var, 0.0)))
    return out


def needs_points(total_points: int, n: int, series: int = 1, *, every_bucket: bool = False
                 ) -> bool:
    """Few enough points that using them directly is cheap; above this, block statistics
    (a block then spans at most about four buckets).

    ``every_bucket``: a reduction across several series (an RL metric's environments, runs of
    a group) whose every bucket should hold a value of each series where it has points: blocks
    only when each series has a block per bucket or more (a series of fewer points would
    leave buckets empty between its blocks: 876 episodes were 7 buckets, not 20)."""
    if every_bucket:
        return total_points < BLOCK_POINTS * n * max(series, 1)
    return total_points <= BLOCK_POINTS * n // 4

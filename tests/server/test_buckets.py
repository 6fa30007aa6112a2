"""Chart buckets, against numpy over the same points: equal-width buckets whose min, max and
count are exact (a spike is never averaged away), with the mean, the last value and, for the
RL band, the standard deviation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrana.server.point_arrays import PointArrays
from metrana.server.store.buckets import aggregate, bucket_points, needs_points
from metrana.server.store.chunks import BLOCK_POINTS, Blocks


def random_points(n: int, seed: int, *, holes: bool = True) -> PointArrays:
    """``n`` points at increasing, irregular steps; some NaN, some without a value."""
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.integers(1, 5, n)).astype(np.int64)
    v = rng.standard_normal(n) * 10
    missing = np.zeros(n, np.bool_)
    if holes:
        v[rng.random(n) < 0.03] = math.nan
        missing = rng.random(n) < 0.03
    return PointArrays(x, np.zeros(n, np.int64), x * 1000, v, missing)


def expected(points: PointArrays, lo: int, hi: int, n: int) -> dict[int, np.ndarray]:
    """The valid values of each bucket, by bucket index, from scratch."""
    width = (hi - lo + 1) / n
    index = np.minimum(((points.x - lo) / width).astype(np.int64), n - 1)
    ok = ~np.isnan(points.v) & ~points.missing
    return {int(b): points.v[(index == b) & ok] for b in np.unique(index)}


def check(buckets: dict[str, object], points: PointArrays, lo: int, hi: int, n: int,
          counts: list[int]) -> None:
    want = expected(points, lo, hi, n)
    got_min, got_max, got_mean = buckets["min"], buckets["max"], buckets["mean"]
    assert isinstance(got_min, list) and isinstance(got_max, list) and isinstance(got_mean, list)
    assert len(got_min) == len(want) and buckets["count"] == counts
    for i, values in enumerate(want.values()):
        if values.size:
            assert (got_min[i], got_max[i]) == (values.min(), values.max())
            assert got_mean[i] == pytest.approx(values.mean(), rel=1e-9, abs=1e-9)
        else:
            assert got_min[i] is got_max[i] is got_mean[i] is None


def test_buckets_of_points_are_exact() -> None:
    points = random_points(5000, seed=1)
    lo, hi, n = int(points.x[0]), int(points.x[-1]), 100
    buckets = bucket_points(points, lo, hi, n)
    width = (hi - lo + 1) / n
    index = np.minimum(((points.x - lo) / width).astype(np.int64), n - 1)
    check(buckets, points, lo, hi, n, np.bincount(index)[np.unique(index)].tolist())
    assert buckets["raw"] is False
    # Each bucket starts at its first point's step and time; its last value is its last
    # point's (None when that point has no value).
    starts = np.flatnonzero(np.r_[True, np.diff(index) != 0])
    assert buckets["x"] == points.x[starts].tolist() and buckets["t"] == points.t[starts].tolist()
    ends = np.r_[starts[1:], points.n] - 1
    for got, end in zip(buckets["last"], ends, strict=True):
        value = None if points.missing[end] or math.isnan(points.v[end]) else points.v[end]
        assert got == value


def test_few_points_are_sent_as_they_are() -> None:
    """At most two points a bucket: the points themselves, ``raw``; NaN stays NaN (a value),
    a point without a value is None."""
    points = PointArrays(np.array([3, 5, 9], np.int64), np.zeros(3, np.int64),
                         np.array([30, 50, 90], np.int64), np.array([1.0, math.nan, 2.0]),
                         np.array([False, False, True]))
    raw = bucket_points(points, 0, 10, 2)
    assert raw["raw"] is True and raw["x"] == [3, 5, 9] and raw["count"] == [1, 1, 1]
    assert raw["min"][0] == 1.0 and math.isnan(raw["min"][1]) and raw["min"][2] is None


def test_buckets_of_block_statistics_are_exact_at_block_granularity() -> None:
    """From blocks of one point, buckets are those of the points; from 128-point blocks,
    each block goes to the bucket of its first step, and min, max and count stay exact."""
    points = random_points(20_000, seed=2)
    lo, hi, n = int(points.x[0]), int(points.x[-1]), 50
    from_points = bucket_points(points, lo, hi, n)
    single = aggregate(Blocks.of_points(points, size=1), lo, hi, n)
    for key in ("x", "t", "min", "max", "count", "last"):
        assert single[key] == from_points[key], key
    assert single["mean"] == pytest.approx(from_points["mean"], rel=1e-9)

    blocks = Blocks.of_points(points, BLOCK_POINTS)
    buckets = aggregate(blocks, lo, hi, n)
    width = (hi - lo + 1) / n
    block_bucket = np.minimum(((blocks.x_first - lo) / width).astype(np.int64), n - 1)
    point_bucket = np.repeat(block_bucket, blocks.count)
    ok = ~np.isnan(points.v) & ~points.missing
    for i, b in enumerate(np.unique(block_bucket)):
        values = points.v[(point_bucket == b) & ok]
        assert buckets["count"][i] == int((point_bucket == b).sum())
        assert (buckets["min"][i], buckets["max"][i]) == (values.min(), values.max())
    assert sum(buckets["count"]) == points.n


def test_the_band_has_the_spread_of_every_value() -> None:
    """``spread``: per bucket, the standard deviation of every value in it (several series'
    points together: the RL band across environments)."""
    points = random_points(3000, seed=3, holes=False)
    lo, hi, n = int(points.x[0]), int(points.x[-1]), 10
    for buckets in (bucket_points(points, lo, hi, n, spread=True),
                    aggregate(Blocks.of_points(points, size=1), lo, hi, n, spread=True)):
        want = expected(points, lo, hi, n)
        assert buckets["std"] == pytest.approx([values.std() for values in want.values()],
                                               rel=1e-6)


def test_no_points_no_buckets() -> None:
    empty = bucket_points(PointArrays.empty(), 0, 10, 5, spread=True)
    assert empty["x"] == [] and empty["count"] == [] and empty["std"] == []


def test_points_are_read_when_a_range_holds_few_enough() -> None:
    """Up to 32 points a bucket the points are used (exact buckets), beyond that blocks."""
    assert needs_points(32 * 1000, 1000) and not needs_points(32 * 1000 + 1, 1000)

"""How points are packed into a chunk, and the block statistics kept beside them: what is
decoded is what was encoded, bit for bit, and every statistic is that of the points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from metrana.server.point_arrays import PointArrays
from metrana.server.store.chunks import (
    BLOCK_POINTS,
    Blocks,
    decode_blocks,
    decode_points,
    encode_blocks,
    encode_points,
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def arrays(x: list[int], v: list[float], *, minor: list[int] | None = None,
           t: list[int] | None = None, missing: list[bool] | None = None) -> PointArrays:
    n = len(x)
    return PointArrays(np.array(x, np.int64), np.array(minor or [0] * n, np.int64),
                       np.array(t if t is not None else [1_700_000_000_000_000_000 + i
                                                         for i in range(n)], np.int64),
                       np.array(v, np.float64), np.array(missing or [False] * n, np.bool_))


def same(a: PointArrays, b: PointArrays) -> None:
    for field in ("x", "minor", "t", "missing"):
        assert getattr(a, field).tolist() == getattr(b, field).tolist(), field
    # Values bit for bit: NaN payloads, -0.0 and the infinities included.
    assert a.v.view(np.uint64).tolist() == b.v.view(np.uint64).tolist()


@pytest.mark.parametrize("rl", [False, True], ids=["standard", "rl"])
def test_points_come_back_exactly_as_they_were_stored(rl: bool) -> None:
    """Steps that jump backwards and across int64, timestamps out of order, NaN, ±inf, -0.0,
    subnormals and points without a value all decode to what was encoded."""
    rng = np.random.default_rng(7)
    n = 3000
    points = PointArrays(
        np.concatenate([np.arange(n - 4), [INT64_MAX, 0, INT64_MAX - 1, 5]]).astype(np.int64),
        rng.integers(0, 10**6, n).astype(np.int64) if rl else np.zeros(n, np.int64),
        np.concatenate([rng.integers(INT64_MIN, INT64_MAX, n - 1), [INT64_MIN]]).astype(np.int64),
        np.concatenate([rng.standard_normal(n - 6),
                        [math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308]]),
        rng.random(n) < 0.01,
    )
    same(decode_points(encode_points(points, rl)), points)


def test_a_standard_chunk_stores_no_minor_steps_and_no_missing_marks() -> None:
    """A training curve costs about its values: the steps and timestamps of regular logging
    compress to almost nothing, and the minor and missing columns are left out."""
    n = 4096
    points = arrays(list(range(n)), np.linspace(2.3, 0.1, n).tolist(),
                    t=[1_700_000_000_000_000_000 + 1_000_000 * i for i in range(n)])
    blob = encode_points(points, rl=False)
    assert len(blob) < 9 * n
    same(decode_points(blob), points)
    assert decode_points(blob).minor.tolist() == [0] * n


def test_empty_and_single_point_chunks() -> None:
    for points in (PointArrays.empty(), arrays([42], [1.5], minor=[3], missing=[True])):
        same(decode_points(encode_points(points, rl=True)), points)


def test_a_blob_that_is_not_a_chunk_is_refused() -> None:
    blob = bytearray(encode_points(arrays([1, 2], [1.0, 2.0]), rl=False))
    blob[2] = 99  # the format version
    with pytest.raises(ValueError, match="not a chunk this server can read"):
        decode_points(bytes(blob))
    with pytest.raises(ValueError, match="not a chunk"):
        decode_points(b"XX" + bytes(blob[2:]))


def test_block_statistics_are_those_of_the_points() -> None:
    """Per block of 128: first/last step, first timestamp, count, count of values, min, max,
    sum, sum of squares over the values (NaN and missing points left out), last value."""
    rng = np.random.default_rng(3)
    n = 1000
    v = rng.standard_normal(n)
    v[rng.random(n) < 0.05] = math.nan
    missing = rng.random(n) < 0.05
    points = PointArrays(np.arange(n, dtype=np.int64) * 2, np.zeros(n, np.int64),
                         np.arange(n, dtype=np.int64) + 10, v, missing)
    blocks = Blocks.of_points(points)
    starts = list(range(0, n, BLOCK_POINTS))
    assert blocks.n == len(starts)
    for i, start in enumerate(starts):
        end = min(start + BLOCK_POINTS, n)
        values = v[start:end][~np.isnan(v[start:end]) & ~missing[start:end]]
        assert (blocks.x_first[i], blocks.x_last[i]) == (2 * start, 2 * (end - 1))
        assert blocks.t_first[i] == start + 10
        assert (blocks.count[i], blocks.valid[i]) == (end - start, values.size)
        assert (blocks.vmin[i], blocks.vmax[i]) == (values.min(), values.max())
        assert blocks.vsum[i] == pytest.approx(values.sum(), abs=1e-12)
        assert blocks.vsumsq[i] == pytest.approx((values ** 2).sum(), rel=1e-12)
        last = math.nan if missing[end - 1] else v[end - 1]
        assert blocks.last[i] == last or (math.isnan(last) and math.isnan(blocks.last[i]))


def test_a_block_without_values_has_no_min_or_max() -> None:
    blocks = Blocks.of_points(arrays([0, 1, 2], [math.nan, 0.0, math.nan],
                                     missing=[False, True, False]), size=3)
    assert (blocks.count[0], blocks.valid[0]) == (3, 0)
    assert math.isnan(blocks.vmin[0]) and math.isnan(blocks.vmax[0])


def test_block_statistics_round_trip_and_concatenate() -> None:
    """Blobs of several chunks joined decode into their blocks in order, in one pass."""
    first = Blocks.of_points(arrays(list(range(300)), [float(i) for i in range(300)]))
    second = Blocks.of_points(arrays(list(range(300, 310)), [-1.0] * 10))
    both = decode_blocks([encode_blocks(first), encode_blocks(second)])
    expected = Blocks.concat([first, second])
    for field in Blocks.FIELDS:
        assert getattr(both, field).tolist() == getattr(expected, field).tolist(), field
    assert both.n == 4 and decode_blocks(encode_blocks(second)).vmin.tolist() == [-1.0]

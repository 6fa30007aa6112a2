"""Points stored in chunks: columns packed into one compressed blob, with block statistics.

Why chunks: a row per point costs ~117 bytes on PostgreSQL and makes every chart read every
point. A chunk holds up to :data:`CHUNK_POINTS` consecutive points of one series (from one
session), as columns:

- ``x``: the step (standard series) or major step / ``rl_step`` (RL series), delta-encoded;
- ``minor``: the RL minor step (episode or env step), delta-encoded; absent for standard series;
- ``t``: the timestamp in ns, delta-encoded;
- ``v``: the float64 value;
- ``missing``: which points carry no value at all (rare; absent when none).

Each int64/float64 column is byte-shuffled (all first bytes, then all second bytes, ...) before
zlib: neighbouring deltas and values share their high bytes, so the planes compress well —
about 10 bytes a point for a real training curve, of which 8 are the value itself.

Beside the data, a chunk keeps the statistics of each block of :data:`BLOCK_POINTS` points
(first/last x, first t, count, count of values, min, max, sum, sum of squares, last value) in
a second, small blob: a bucketed chart of a 10M-point series reads those, never the points, and
min/max still come from every point (a spike is never averaged away).
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from ..point_arrays import PointArrays

__all__ = [
    "BLOCK_POINTS",
    "CHUNK_POINTS",
    "Blocks",
    "decode_blocks",
    "decode_points",
    "encode_blocks",
    "encode_points",
]

CHUNK_POINTS = 4096
BLOCK_POINTS = 128
_MAGIC = b"MC"
_VERSION = 1
_HEAD = struct.Struct("<2sBBI")  # magic, version, flags, n
_HAS_MINOR = 1
_HAS_MISSING = 2
_LEVEL = 1  # most of zlib's gain on shuffled columns for a third of level 6's time

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]


def _shuffle(array: npt.NDArray[Any]) -> bytes:
    planes: bytes = np.ascontiguousarray(array).view(np.uint8).reshape(-1, 8).T.tobytes()
    return planes


def _unshuffle(data: bytes, n: int, dtype: type) -> npt.NDArray[Any]:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(8, n)
    return np.ascontiguousarray(planes.T).view(dtype).reshape(n)


def _delta(array: I64) -> I64:
    out = np.empty_like(array)
    if array.shape[0]:
        out[0] = array[0]
        np.subtract(array[1:], array[:-1], out=out[1:])
    return out


def encode_points(columns: PointArrays, rl: bool) -> bytes:
    n = columns.n
    flags = (_HAS_MINOR if rl else 0) | (_HAS_MISSING if columns.missing.any() else 0)
    parts = [_shuffle(_delta(columns.x))]
    if rl:
        parts.append(_shuffle(_delta(columns.minor)))
    parts += [_shuffle(_delta(columns.t)), _shuffle(columns.v)]
    if flags & _HAS_MISSING:
        parts.append(np.packbits(columns.missing).tobytes())
    return _HEAD.pack(_MAGIC, _VERSION, flags, n) + zlib.compress(b"".join(parts), _LEVEL)


def decode_points(blob: bytes) -> PointArrays:
    magic, version, flags, n = _HEAD.unpack_from(blob)
    if magic != _MAGIC or version != _VERSION:
        raise ValueError(f"not a chunk this server can read (version {version})")
    data = zlib.decompress(blob[_HEAD.size:])
    width = 8 * n
    offset = 0

    def column(dtype: type) -> npt.NDArray[Any]:
        nonlocal offset
        out = _unshuffle(data[offset:offset + width], n, dtype)
        offset += width
        return out

    x = np.cumsum(column(np.int64), dtype=np.int64)
    minor = np.cumsum(column(np.int64), dtype=np.int64) if flags & _HAS_MINOR \
        else np.zeros(n, np.int64)
    t = np.cumsum(column(np.int64), dtype=np.int64)
    v = column(np.float64)
    if flags & _HAS_MISSING:
        missing = np.unpackbits(np.frombuffer(data[offset:], np.uint8), count=n).astype(bool)
    else:
        missing = np.zeros(n, np.bool_)
    return PointArrays(x, minor, t, v, missing)


@attrs.define
class Blocks:
    """Statistics of consecutive blocks of points; the unit every bucketed read works on.

    ``count`` counts points, ``valid`` those with a number that is not NaN; min/max/sum/sumsq
    are over the valid values (NaN when there are none); ``last`` is the value of the block's
    last point (by x, then minor).
    """

    x_first: I64
    x_last: I64
    t_first: I64
    count: I64
    valid: I64
    vmin: F64
    vmax: F64
    vsum: F64
    vsumsq: F64
    last: F64

    FIELDS = ("x_first", "x_last", "t_first", "count", "valid", "vmin", "vmax", "vsum",
              "vsumsq", "last")

    @property
    def n(self) -> int:
        return int(self.x_first.shape[0])

    @staticmethod
    def concat(parts: list[Blocks]) -> Blocks:
        if len(parts) == 1:
            return parts[0]
        return Blocks(*(np.concatenate([getattr(p, f) for p in parts]) for f in Blocks.FIELDS))

    def take(self, index: Any) -> Blocks:
        return Blocks(*(getattr(self, f)[index] for f in Blocks.FIELDS))

    @staticmethod
    def of_points(columns: PointArrays, size: int = BLOCK_POINTS) -> Blocks:
        """Blocks of ``size`` points (the last one shorter) over points in x order."""
        n = columns.n
        starts = np.arange(0, n, size)
        ends = np.minimum(starts + size, n)
        v = columns.v
        ok = ~(np.isnan(v) | columns.missing)
        clean = np.where(ok, v, 0.0)
        count = (ends - starts).astype(np.int64)
        valid = np.add.reduceat(ok.astype(np.int64), starts) if n else np.empty(0, np.int64)
        with np.errstate(all="ignore"):  # inf - inf and 1e300**2 are values here, not errors
            vmin = np.minimum.reduceat(np.where(ok, v, np.inf), starts) if n else np.empty(0)
            vmax = np.maximum.reduceat(np.where(ok, v, -np.inf), starts) if n else np.empty(0)
            vsum = np.add.reduceat(clean, starts) if n else np.empty(0)
            vsumsq = np.add.reduceat(clean * clean, starts) if n else np.empty(0)
        none = valid == 0
        vmin[none] = np.nan
        vmax[none] = np.nan
        last = np.where(columns.missing[ends - 1], np.nan, v[ends - 1]) if n else np.empty(0)
        return Blocks(columns.x[starts], columns.x[ends - 1], columns.t[starts], count,
                      valid.astype(np.int64), vmin.astype(np.float64), vmax.astype(np.float64),
                      vsum.astype(np.float64), vsumsq.astype(np.float64), last)


BLOCK_DTYPE = np.dtype([(name, "<i8" if name in ("x_first", "x_last", "t_first", "count", "valid")
                         else "<f8") for name in Blocks.FIELDS])


def encode_blocks(blocks: Blocks) -> bytes:
    """Block statistics as packed little-endian records, one per block: a chart read joins
    the blobs of many chunks and decodes them with one ``frombuffer``."""
    records = np.empty(blocks.n, dtype=BLOCK_DTYPE)
    for name in Blocks.FIELDS:
        records[name] = getattr(blocks, name)
    out: bytes = records.tobytes()
    return out


def decode_blocks(blobs: bytes | list[bytes]) -> Blocks:
    """The blocks of one chunk, or of several (their blobs in order)."""
    data = blobs if isinstance(blobs, bytes) else b"".join(blobs)
    records = np.frombuffer(data, dtype=BLOCK_DTYPE)
    return Blocks(*(np.ascontiguousarray(records[name]) for name in Blocks.FIELDS))

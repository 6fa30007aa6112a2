"""Values that are not one number: histograms and scatter clouds, checked at the call site.

A histogram or a point cloud travels the same pipeline as a scalar point — the inbox item's
value slot holds a :class:`Histogram` or a :class:`Scatter` instead of a float (see
:mod:`metrana._items`) — so batching, retries, the spool, ``flush`` and the counters hold for
them unchanged. What differs is checked here, once, in the caller's thread: the shapes, the
numbers, and how each is spelt on the wire (``HistogramPoint`` / ``ScatterPoint`` of the
protocol) and in the spool.

torch tensors are read through ``numpy()`` (or ``tolist()``) and never imported.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

__all__ = [
    "HISTOGRAM",
    "KIND_NAMES",
    "MAX_BINS",
    "MAX_SCATTER_POINTS",
    "SCALAR",
    "SCATTER",
    "SCATTER3D",
    "Histogram",
    "Scatter",
    "as_histogram",
    "make_scatter",
    "value_from_record",
    "value_json",
    "value_record",
]

# A series' value kind. A metric keeps one for its lifetime in a run (SeriesTable checks).
SCALAR, HISTOGRAM, SCATTER, SCATTER3D = 0, 2, 3, 4
KIND_NAMES = {SCALAR: "scalar", HISTOGRAM: "histogram", SCATTER: "scatter (2-D)",
              SCATTER3D: "scatter (3-D)"}
MAX_BINS = 512
MAX_SCATTER_POINTS = 32_768
# How much of a request a value fills, in scalar points: a batch of 10,000 "points" stays a
# request of a few MB whatever it holds (one number of a histogram or cloud ~ 1/8 point).
_NUMBERS_PER_WEIGHT = 8

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def _array(values: Any, what: str) -> npt.NDArray[Any]:
    """Any 1-D or N-D array-like (numpy, list, torch tensor) as a numpy array, never
    importing torch: a tensor is moved to the CPU and detached through its own methods."""
    if isinstance(values, np.ndarray):
        return values
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # a torch tensor
        tensor = values.detach().cpu()
        if str(getattr(tensor, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            tensor = tensor.float()
        return np.asarray(tensor.numpy())
    if isinstance(values, (str, bytes)) or values is None or isinstance(values, dict):
        raise TypeError(f"{what} must be an array or a sequence of numbers, got "
                        f"{type(values).__name__}")
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} cannot be read as an array of numbers: {exc}") from None


def _numbers(values: Any, what: str) -> F64:
    array = _array(values, what)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{what} must hold numbers, got an array of {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.float64).reshape(-1)


class Histogram:
    """One histogram: ``edges`` (bins + 1 finite, strictly increasing numbers) and exactly one
    of ``counts`` (non-negative integers) or ``densities``, with optional
    ``stats=(min, max, sum, sum_of_squares)`` of the values binned.

    Checked when made, so a bad histogram is refused at the call that built it.
    """

    __slots__ = ("counts", "densities", "edges", "stats")

    def __init__(self, edges: Any, counts: Any = None, densities: Any = None,
                 stats: Sequence[float] | None = None) -> None:
        if (counts is None) == (densities is None):
            raise ValueError("Histogram takes exactly one of counts= or densities=")
        edge_array = _numbers(edges, "Histogram edges")
        if counts is not None:
            raw = _array(counts, "Histogram counts").reshape(-1)
            if raw.dtype.kind == "f":
                if not np.all(np.isfinite(raw)) or np.any(raw != np.floor(raw)):
                    raise ValueError("Histogram counts must be whole numbers; pass densities= "
                                     "for fractional values")
            elif raw.dtype.kind not in "biu":
                raise TypeError(f"Histogram counts must be integers, got an array of {raw.dtype}")
            if raw.size and raw.min() < 0:
                raise ValueError(f"Histogram counts must be >= 0, got {raw.min()} at bin "
                                 f"{int(np.argmin(raw))}")
            if raw.size and float(raw.max()) > 2**63 - 1:
                raise ValueError("Histogram counts must fit in 64 bits")
            values: npt.NDArray[Any] = raw.astype(np.int64)
            what = "counts"
        else:
            values = _numbers(densities, "Histogram densities")
            if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
                raise ValueError("Histogram densities must be finite and >= 0")
            what = "densities"
        bins = values.shape[0]
        if not 1 <= bins <= MAX_BINS:
            raise ValueError(f"a Histogram has 1 to {MAX_BINS} bins, got {bins} {what}")
        if edge_array.shape[0] != bins + 1:
            raise ValueError(f"Histogram edges must be one more than its {what}: "
                             f"{edge_array.shape[0]} edges for {bins} bins")
        if not np.all(np.isfinite(edge_array)):
            raise ValueError("Histogram edges must be finite (no NaN or inf)")
        if np.any(np.diff(edge_array) <= 0):
            at = int(np.argmax(np.diff(edge_array) <= 0))
            raise ValueError(f"Histogram edges must be strictly increasing: edge {at + 1} "
                             f"({float(edge_array[at + 1])!r}) is not above edge {at} "
                             f"({float(edge_array[at])!r})")
        self.edges = edge_array
        self.counts: I64 | None = values if counts is not None else None
        self.densities: F64 | None = values if densities is not None else None
        self.stats = None if stats is None else _stats(stats)

    @classmethod
    def from_values(cls, values: Any, bins: int = 64,
                    range: tuple[float, float] | None = None) -> Histogram:  # noqa: A002
        """Counts of ``values`` (a 1-D or N-D numpy array, list or torch tensor) in ``bins``
        equal bins over ``range`` (default: the finite values' min and max), with the exact
        min, max, sum and sum of squares of the values binned.

        NaN and ±inf cannot be binned: they are left out, and a warning says how many, once.
        """
        bins = operator.index(bins)
        if not 1 <= bins <= MAX_BINS:
            raise ValueError(f"bins must be 1 to {MAX_BINS}, got {bins}")
        array = _array(values, "Histogram.from_values values")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"Histogram.from_values takes numbers, got an array of {array.dtype}")
        flat = array.reshape(-1)
        if flat.dtype.kind == "f":
            finite = np.isfinite(flat)
            if not finite.all():
                _warn_not_finite(int(flat.size - np.count_nonzero(finite)), flat.size)
                flat = flat[finite]
        flat64 = flat.astype(np.float64, copy=False)
        if range is not None:
            low, high = float(range[0]), float(range[1])
            if not (math.isfinite(low) and math.isfinite(high) and low < high):
                raise ValueError(f"range must be two finite numbers, low < high; got {range!r}")
            inside = flat64[(flat64 >= low) & (flat64 <= high)]
        elif flat64.size:
            low, high = float(flat64.min()), float(flat64.max())
            inside = flat64
        else:
            low, high, inside = 0.0, 1.0, flat64
        if low == high:
            low, high = low - 0.5, high + 0.5
        counts, edges = np.histogram(inside, bins=bins, range=(low, high))
        stats = None
        if inside.size:
            # einsum, not dot: BLAS threads cost more than they save on a busy machine.
            stats = (float(inside.min()), float(inside.max()), float(inside.sum()),
                     float(np.einsum("i,i->", inside, inside)))
        return cls(edges, counts=counts, stats=stats)

    @property
    def bins(self) -> int:
        """The number of bins (one fewer than the edges)."""
        return int(self.edges.shape[0] - 1)

    @property
    def weight(self) -> int:
        """How much of a request it fills, in scalar points (a number ~ 1/8 point)."""
        return 1 + 2 * self.bins // _NUMBERS_PER_WEIGHT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return (np.array_equal(self.edges, other.edges) and self.stats == other.stats
                and _same(self.counts, other.counts) and _same(self.densities, other.densities))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        what = "counts" if self.counts is not None else "densities"
        low, high = float(self.edges[0]), float(self.edges[-1])
        return f"Histogram(bins={self.bins}, range=({low!r}, {high!r}), {what}, stats={self.stats})"


def _same(a: npt.NDArray[Any] | None, b: npt.NDArray[Any] | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None
                                         and np.array_equal(a, b))


def _stats(stats: Sequence[float]) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(x) for x in stats)
    except (TypeError, ValueError):
        raise TypeError("Histogram stats must be (min, max, sum, sum_of_squares) numbers") from None
    if len(values) != 4:
        raise ValueError(f"Histogram stats must be (min, max, sum, sum_of_squares), got "
                         f"{len(values)} numbers")
    if not all(math.isfinite(x) for x in values):
        raise ValueError("Histogram stats must be finite")
    if values[0] > values[1]:
        raise ValueError(f"Histogram stats: min {values[0]!r} is above max {values[1]!r}")
    return values[0], values[1], values[2], values[3]


def _warn_not_finite(count: int, total: int) -> None:
    """One warning naming the count (a Python warning: shown once per calling line)."""
    warnings.warn(f"Histogram.from_values: {count:,} of {total:,} values are NaN or ±inf and "
                  "were left out of the histogram", RuntimeWarning, stacklevel=3)


def as_histogram(value: Any, name: str) -> Histogram:
    """What ``log_histogram`` was given: a :class:`Histogram`, or raw values binned with the
    defaults of :meth:`Histogram.from_values`."""
    if type(value) is Histogram:
        return value
    if isinstance(value, (int, float)) or value is None or isinstance(value, (str, bytes)):
        raise TypeError(f"log_histogram({name!r}) takes a metrana.Histogram or an array of values "
                        f"to bin, got {type(value).__name__}: {value!r:.80}")
    return Histogram.from_values(value)


class Scatter:
    """One step's point cloud: ``xs``, ``ys`` and, in 3-D, ``zs`` (float64, equal lengths)."""

    __slots__ = ("xs", "ys", "zs")

    def __init__(self, xs: F64, ys: F64, zs: F64 | None) -> None:
        self.xs, self.ys, self.zs = xs, ys, zs

    @property
    def weight(self) -> int:
        return 1 + (3 if self.zs is not None else 2) * int(self.xs.shape[0]) // _NUMBERS_PER_WEIGHT

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Scatter):
            return NotImplemented
        return (np.array_equal(self.xs, other.xs) and np.array_equal(self.ys, other.ys)
                and _same(self.zs, other.zs))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Scatter(points={self.xs.shape[0]}, 3d={self.zs is not None})"


def make_scatter(name: str, xs: Any, ys: Any, zs: Any = None, *, three_d: bool = False) -> Scatter:
    """A checked point cloud: equal lengths, 0 to 32,768 finite points."""
    call = "log_scatter3d" if three_d else "log_scatter"
    axes = [("xs", xs), ("ys", ys)] + ([("zs", zs)] if three_d else [])
    arrays = [_numbers(values, f"{call}({name!r}) {axis}") for axis, values in axes]
    lengths = {axis: array.shape[0] for (axis, _), array in zip(axes, arrays, strict=True)}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"{call}({name!r}): xs, ys{', zs' if three_d else ''} must have equal "
                         f"lengths, got " + ", ".join(f"{k}={v}" for k, v in lengths.items()))
    n = arrays[0].shape[0]
    if n > MAX_SCATTER_POINTS:
        raise ValueError(f"{call}({name!r}): at most {MAX_SCATTER_POINTS:,} points a step, got "
                         f"{n:,}; subsample them first")
    for (axis, _), array in zip(axes, arrays, strict=True):
        bad = ~np.isfinite(array)
        if bad.any():
            raise ValueError(f"{call}({name!r}): {axis} holds {int(bad.sum()):,} NaN or ±inf "
                             f"values (the first at index {int(np.argmax(bad))}); points must "
                             "be finite")
    return Scatter(arrays[0], arrays[1], arrays[2] if three_d else None)


# ------------------------------------------------------------------ the wire and the spool

_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def value_json(value: Any, step: int, ts: int) -> bytes:
    """A ``HistogramPoint`` or ``ScatterPoint`` in the protobuf JSON mapping (int64 as
    strings, timestamp in milliseconds as the protocol carries it)."""
    head = b'{"step":"%d","timestampMillis":"%d",' % (step, ts // 1_000_000)
    if type(value) is Histogram:
        body = b'"binEdges":' + orjson.dumps(value.edges, option=_NUMPY)
        if value.counts is not None:
            body += b',"counts":' + orjson.dumps([str(c) for c in value.counts.tolist()])
        else:
            body += b',"densities":' + orjson.dumps(value.densities, option=_NUMPY)
        if value.stats is not None:
            low, high, total, squares = value.stats
            body += b',"stats":' + orjson.dumps({"min": low, "max": high, "sum": total,
                                                 "sumOfSquares": squares})
        return head + body + b"}"
    body = (b'"xs":' + orjson.dumps(value.xs, option=_NUMPY)
            + b',"ys":' + orjson.dumps(value.ys, option=_NUMPY))
    if value.zs is not None:
        body += b',"zs":' + orjson.dumps(value.zs, option=_NUMPY)
    return head + body + b"}"


def value_record(value: Any) -> dict[str, Any]:
    """A value as the spool's JSON keeps it (exact: floats as JSON numbers, counts as ints)."""
    if type(value) is Histogram:
        record: dict[str, Any] = {"e": value.edges.tolist(), "s": value.stats}
        if value.counts is not None:
            record["c"] = value.counts.tolist()
        else:
            record["d"] = value.densities.tolist()  # type: ignore[union-attr]
        return record
    record = {"x": value.xs.tolist(), "y": value.ys.tolist()}
    if value.zs is not None:
        record["z"] = value.zs.tolist()
    return record


def value_from_record(record: dict[str, Any]) -> Histogram | Scatter:
    if "e" in record:
        return Histogram(record["e"], counts=record.get("c"), densities=record.get("d"),
                         stats=record.get("s"))
    zs = record.get("z")
    return Scatter(np.array(record["x"], np.float64), np.array(record["y"], np.float64),
                   None if zs is None else np.array(zs, np.float64))

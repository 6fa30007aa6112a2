"""What travels from ``log()`` to the wire: the inbox item, defined once.

A scalar point is a plain tuple — not an attrs record — because millions of them sit in
queues: a tuple of plain numbers is dropped from the garbage collector's watch after its first
pass, an object is re-scanned at every collection (that was a third of the client's time at a
million queued points). Its layout::

    (series, step, major, value, ts)
     │       │     │      │      └ Unix time in ns (int)
     │       │     │      └ the value as a float
     │       │     └ RL: the major step (rl_step); None for a standard series
     │       └ the step given with step=/episode=/env_step=, or None (the StepCounter numbers it)
     └ the series' index in the session's SeriesTable (an int, for the same reason)

Readers unpack it (``for series, step, major, value, ts in items``) or, in the StepCounter's
grouping loop, read ``item[SERIES]`` — which a vectorized :class:`metrana._vector.Block`
answers too, so both kinds of item share one queue.

The commonest points — a standard series numbered automatically, in a session with an unbounded
queue — do not become items at all: ``log()`` appends ``(value, ts)`` to the series' own list in
the inbox (its *column*), and the engine takes whole columns as :class:`Points`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["MAJOR", "SERIES", "STEP", "TS", "VALUE", "Columns", "Item", "Point", "Points"]

SERIES, STEP, MAJOR, VALUE, TS = range(5)

Item = tuple[int, int | None, int | None, float, int]
# A point as the spool stores it: (step, major, value, ts), the step assigned.
Point = tuple[int, int | None, float, int]

# A point as log() hands it to a column: (value, ts). The column keeps it flat (see Points).
Pair = tuple[float, int]


class Points:
    """Consecutive points of one series taken from its column: ``flat`` is
    ``[value0, ts0, value1, ts1, ...]``.

    A column saves the caller the 5-tuple and the engine the work of sorting a mixed chunk
    back into series: the points are already one series' points in order, and the encoder
    reads them as two numpy columns (``flat[0::2]``, ``flat[1::2]``: a list slice and one
    conversion each, in C). Kept flat rather than as pairs, a point costs two Python objects
    instead of three, to build and to free. A ``Points`` stands where a sequence of items stands — ``len``,
    slices (still ``Points``), iteration (as items, for the rare per-point paths: a series
    that turned manual, a refused batch split point by point, the spool) — and answers
    ``points[SERIES]`` like an item does.
    """

    __slots__ = ("flat", "series")

    def __init__(self, series: int, flat: list[Any]) -> None:
        self.series = series
        self.flat = flat

    def __len__(self) -> int:
        return len(self.flat) // 2

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            start, stop, stride = index.indices(len(self))
            if stride != 1:
                raise IndexError("Points answers contiguous slices only")
            return Points(self.series, self.flat[2 * start:2 * max(stop, start)])
        if index == SERIES:
            return self.series
        raise IndexError(f"Points answers slices and [SERIES], not [{index!r}]")

    def __iter__(self) -> Iterator[Item]:
        series, flat = self.series, self.flat
        for value, ts in zip(flat[0::2], flat[1::2], strict=True):
            yield (series, None, None, value, ts)

    def __repr__(self) -> str:
        return f"<Points series={self.series} n={len(self)}>"


class Columns(list[Points]):
    """A chunk the pump took from the inbox's columns: one :class:`Points` per series."""

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
"""

from __future__ import annotations

__all__ = ["MAJOR", "SERIES", "STEP", "TS", "VALUE", "Item", "Point"]

SERIES, STEP, MAJOR, VALUE, TS = range(5)

Item = tuple[int, int | None, int | None, float, int]
# A point as the spool stores it: (step, major, value, ts), the step assigned.
Point = tuple[int, int | None, float, int]

"""The Inbox: the one structure that crosses from the caller's threads to the engine.

The common case — an open logger with an unbounded queue — costs one ``list.append``, which
the GIL makes atomic: no lock, no wake-up. A standard series numbered automatically has its
own list here, its *column* of ``(value, ts)`` pairs (see :mod:`metrana._items`); every other
point is an item in one shared deque. (Waking a trio thread costs tens of microseconds; the
engine drains on its own short timer instead, and is woken early only when someone waits: a
flush, a close, a caller blocked by backpressure.) Everything else — a bounded queue and its
backpressure strategy, a closed or failed logger — takes :meth:`Inbox.put`, under a lock, in the
caller's thread, so the caller feels backpressure immediately.

The inbox owns the columns outright: which series has one (:meth:`Inbox.put_point` opens it),
which may never have one (a series whose points went to the deque), and moving one into the
deque (:meth:`Inbox.demote`). ``log()``'s fast path reads :attr:`Inbox.named` (a plain name →
its column's ``extend``) and nothing else of it.

A point appended by one thread while another closes the logger can land after the engine's
final drain; it is then counted as discarded when the engine settles, never silently lost.

Everything that crosses between callers' threads and the engine's, and why it is safe:

- **inbox items** (:mod:`metrana._items`) and vectorized :class:`~metrana._vector.Block` s:
  built whole in the caller's thread, then only read — handed over by ``deque.append`` /
  ``popleft``, which the GIL makes atomic;
- **columns**: callers only append to a column's list (atomic); the engine copies and deletes
  a prefix of it (each atomic; appends land after the prefix), under this inbox's lock so a
  snapshot counts every pair once. A column is created under the lock and never replaced, so
  the ``append`` a caller holds always feeds the list the engine reads;
- **the SeriesTable's keys** (:class:`~metrana._series.SeriesTable`): appended (under the
  table's lock) before any item naming the new index is queued, never removed; a key's
  ``manual_seen`` / ``vector_seen`` flags only ever go from False to True, set before the item
  that needs them is queued;
- **which series have a column**: ``named`` and the open columns only ever lose a series once
  it is demoted (a caller that looked its column up just before appends to the same list,
  which the engine still takes); the set of series in the deque only grows;
- **counters** (:class:`~metrana._stats.Counters`): each field has one writer; callers' fields
  are written under this inbox's lock, which drains and snapshots also take;
- **flush markers** (:class:`~metrana._actors.flush.FlushMarker`): a ``threading.Event`` the
  caller waits on and the engine sets;
- **the session's fast-path flag** and the inbox's ``open``/``failure``: plain attribute
  stores, re-read on the next call; changes that must not be missed go through this lock;
- **held errors** (:class:`~metrana._actors.error_collector.ErrorCollector`): under its own
  lock, taken by the caller that raises them (RaiseOnLog) or by ``close()``.

Everything else belongs to the engine's thread (or, for a TrioSession, to the trio task).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ._actors.flush import FlushMarker
from ._enums import BackpressureStrategy
from ._exceptions import MetranaEventQueueFullError, MetranaLoggerClosedError
from ._items import Columns, Item, Pair, Points
from ._series import SeriesKey
from ._stats import Counters, Metrics

__all__ = ["Inbox"]


class Inbox:
    def __init__(
        self,
        counters: Counters,
        *,
        plain_names: Mapping[Any, int] | None = None,
        maxsize: int = 0,
        strategy: BackpressureStrategy = BackpressureStrategy.DropNew,
        can_block: bool = True,
    ) -> None:
        self._queue: deque[Any] = deque()
        self._columns: dict[int, list[Any]] = {}  # series index -> its column (never replaced)
        # The columns open to log(): series index -> its column's extend, and plain name (the
        # default scale, no labels, not evaluation: log("loss", 0.5)) -> the same. A demoted
        # series leaves both; its list stays in _columns for what callers still append.
        self._open: dict[int, Callable[[Pair], None]] = {}
        self.named: dict[Any, Callable[[Pair], None]] = {}
        self._plain_names: Mapping[Any, int] = plain_names if plain_names is not None else {}
        # Series whose points went to the deque (a manual step, a vectorized call, another
        # path): they never open a column, so a series' points are never in both at once.
        self._in_deque: set[int] = set()
        self.append = self._queue.append  # the lock-free fast path (open and unbounded)
        self.extend = self._queue.extend
        self._lock_free = not maxsize  # open and unbounded: appends need no lock
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._counters = counters
        self._maxsize = maxsize
        self._strategy = strategy
        self._can_block = can_block
        self._waiting = 0
        self._new_markers = 0
        self.markers: list[FlushMarker] = []
        self.open = True
        self.failure: BaseException | None = None  # the engine stopped: drop, don't raise
        self.wake: Callable[[], None] = lambda: None  # set by whoever runs the engine
        self.on_change: Callable[[], None] = lambda: None  # open/closed: the session's fast path

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def bounded(self) -> bool:
        return self._maxsize > 0

    def put(self, item: Any) -> None:
        """The general path: closed/failed checks and backpressure, under the lock."""
        with self._lock:
            if not self.open:
                self._closed()
                return
            if self._maxsize and len(self._queue) >= self._maxsize:
                if self._strategy is BackpressureStrategy.DropNew:
                    self._counters.dropped_backpressure += 1
                    return
                self._full()  # returns once there is room (Block), or raises
                if not self.open:
                    raise MetranaLoggerClosedError("the logger was closed while log() waited for room")
            self._queue.append(item)

    def put_internal(self, points: list[tuple[SeriesKey, float]], ts: int) -> None:
        """Points the engine logs itself (system metrics), from the engine's thread: queued
        while the inbox is open, dropped once it closed (the run is ending), outside the
        bound (a handful every interval: never worth blocking the engine for). A name the
        user logs themselves from a column of their thread is left to them."""
        with self._lock:
            if not self.open:
                return
            for key, value in points:
                if key.index not in self._open:
                    self._in_deque.add(key.index)
                    self._queue.append((key.index, None, None, value, ts))

    def put_blocks(self, blocks: list[Any], points: int) -> None:
        """Vectorized calls: each block counts as one queue entry, its points as points."""
        with self._lock:
            if not self.open:
                self._closed(points)
                return
            kept = 0
            for block in blocks:
                if self._maxsize and len(self._queue) >= self._maxsize:
                    if self._strategy is BackpressureStrategy.DropNew:
                        self._counters.dropped_backpressure += len(block.values)
                        points -= len(block.values)
                        continue
                    self._full()
                    if not self.open:
                        raise MetranaLoggerClosedError("the logger was closed while log() waited")
                self._queue.append(block)
                kept += 1
            self._counters.intake_accepted += points - kept  # the drain counts one per block
        if points > 10_000:
            self.wake()

    # ------------------------------------------------------------- the columns

    def put_point(self, key: SeriesKey, step: int | None, value: float, ts: int) -> None:
        """A checked point of a standard scalar series (``log()``'s general path): into its
        column when it has one or may open one, else into the deque as an item, after its
        column's points (:meth:`demote`), so the series keeps its order.

        A column opens for a series numbered automatically whose points never went to the
        deque, in an open unbounded inbox (a column has no bound to apply). The caller has
        already checked the session may take points."""
        index = key.index
        if step is None:
            column = self._open.get(index)
            if column is not None:
                if self._lock_free:
                    column((value, ts))
                else:
                    self._put_pair(index, (value, ts))
                return
            if self._lock_free and index not in self._in_deque:
                self._open_column(key)((value, ts))
                return
        else:
            self.demote(key)
            key.manual_seen = True
        self._in_deque.add(index)
        item: Item = (index, step, None, value, ts)
        if self._lock_free:
            self._queue.append(item)
        else:
            self.put(item)

    def _open_column(self, key: SeriesKey) -> Callable[[Pair], None]:
        """The ``extend`` of a series' new column: ``log()`` calls it with ``(value, ts)``,
        which lands as two consecutive entries (one C call: atomic, so the column's length is
        always even and a concurrent take never splits a point)."""
        with self._lock:
            column = self._columns.get(key.index)
            if column is None:
                column = self._columns[key.index] = []
        extend = self._open[key.index] = column.extend
        if self._plain_names.get(key.name) == key.index:
            self.named[key.name] = extend
        return extend

    def _put_pair(self, series: int, pair: Pair) -> None:
        """A column's point while the inbox is closing or closed: refused like any other."""
        with self._lock:
            if not self.open:
                self._closed()
                return
            self._columns[series].extend(pair)

    def demote(self, key: SeriesKey) -> None:
        """The series' points go to the deque from now on (a manual step, a vectorized call):
        ``log()`` forgets its column first, then the column's points move into the deque as
        items, before the point that demoted it, so the series keeps its order."""
        index = key.index
        self._in_deque.add(index)
        extend = self._open.pop(index, None)
        if extend is None:
            return
        if self.named.get(key.name) is extend:
            del self.named[key.name]
        with self._lock:
            column = self._columns[index]
            n = len(column)
            if n:
                self._queue.extend(Points(index, column[:n]))  # as items
                del column[:n]

    def take_columns(self) -> Columns:
        """What the columns hold, one :class:`Points` per series (engine side)."""
        out = Columns()
        taken = 0
        with self._lock:
            for series, column in self._columns.items():
                n = len(column)
                if n:
                    out.append(Points(series, column[:n]))
                    del column[:n]  # points added meanwhile stay: they follow the prefix
                    taken += n // 2
            self._counters.accepted += taken
        return out

    def _closed(self, count: int = 1) -> None:
        if self.failure is None:
            raise MetranaLoggerClosedError("the logger is closed; call init() to start a new run")
        # The engine failed (reported through the error strategy): the training loop goes on,
        # and the points are counted as discarded rather than raising from every log().
        self._counters.intake_accepted += count
        self._counters.intake_discarded += count

    def _full(self) -> None:
        """Called with the lock held when the queue is at its bound (Raise or Block)."""
        if self._strategy is BackpressureStrategy.Raise or not self._can_block:
            hint = "" if self._can_block else " (in a trio program use `await run.wait_for_room()`)"
            raise MetranaEventQueueFullError(
                f"event queue is full ({self._maxsize:,} points waiting to be sent){hint}"
            )
        self._waiting += 1
        try:
            self.wake()
            while self.open and len(self._queue) >= self._maxsize:
                self._space.wait()
        finally:
            self._waiting -= 1

    def has_room(self) -> bool:
        return not self._maxsize or len(self._queue) < self._maxsize

    def drain(self) -> list[Any]:
        """Everything queued, in order, and what the columns hold (engine side)."""
        return [*self.take_columns(), *self.drain_with_markers()[0]]

    def drain_with_markers(self, limit: int | None = None) -> tuple[list[Any], bool]:
        """What is queued (at most ``limit`` items), in order, and whether flush markers are
        among it.

        Callers may keep appending while this runs (``popleft`` and ``append`` are atomic);
        what they add after the length was read waits for the next drain. The lock makes
        "popped and counted" one step as far as :meth:`snapshot` can see.
        """
        queue = self._queue
        popleft = queue.popleft
        with self._lock:
            count = len(queue) if limit is None else min(len(queue), limit)
            items = [popleft() for _ in range(count)]
            markers = 0
            if self._new_markers:
                markers = sum(1 for item in items if type(item) is FlushMarker)
                self._new_markers -= markers
            self._counters.accepted += len(items) - markers
            if self._waiting:
                self._space.notify_all()
        return items, bool(markers)

    def snapshot(self, wait: float = -1) -> Metrics:
        """The counters with what is still queued here counted as pending, consistently.

        ``wait``: at most this long for the lock, then a snapshot without it — for a signal
        handler, which may have interrupted its own thread while it held the lock.
        """
        if not self._lock.acquire(timeout=wait):
            return self._counters.snapshot(self._queued())
        try:
            return self._counters.snapshot(self._queued())
        finally:
            self._lock.release()

    def _queued(self) -> int:
        return (len(self._queue) - self._new_markers
                + sum(map(len, list(self._columns.values()))) // 2)

    def put_marker(self, marker: FlushMarker) -> None:
        """Queue a flush barrier behind every point put so far (ignores the bound)."""
        with self._lock:
            if not self.open:
                raise MetranaLoggerClosedError("the logger is closed; nothing to flush")
            self._new_markers += 1
            self.markers.append(marker)
            self._queue.append(marker)
        self.wake()

    def release_markers(self) -> None:
        """The engine stopped: nobody will settle the outstanding flushes."""
        with self._lock:
            markers, self.markers = self.markers, []
        for marker in markers:
            marker.release(aborted=True)

    def close(self) -> None:
        """Stop intake; wake callers blocked on a full queue."""
        with self._lock:
            self.open = False
            self._lock_free = False
            self._space.notify_all()
        self.on_change()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.failure = error
            self.open = False
            self._lock_free = False
            self._space.notify_all()
        self.on_change()

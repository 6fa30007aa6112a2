"""The Inbox: the one structure that crosses from the caller's threads to the engine.

``put()`` is a lock, a length check and a deque append. It never wakes the engine per event
(waking a trio thread costs tens of microseconds): the engine drains on its own short timer,
and is woken early only when the queue holds a whole batch, is full, or someone is waiting
(flush, close, Block backpressure).

Backpressure is applied here, in the caller's thread, so the caller feels it immediately.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ._actors.flush import FlushMarker
from ._enums import BackpressureStrategy
from ._exceptions import MetranaEventQueueFullError, MetranaLoggerClosedError
from ._stats import Counters

__all__ = ["Inbox", "WAKE_AT"]

WAKE_AT = 10_000  # one full batch


class Inbox:
    def __init__(
        self,
        counters: Counters,
        *,
        maxsize: int = 0,
        strategy: BackpressureStrategy = BackpressureStrategy.DropNew,
        can_block: bool = True,
    ) -> None:
        self._queue: deque[Any] = deque()
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._counters = counters
        self._maxsize = maxsize
        self._strategy = strategy
        self._can_block = can_block
        self._wake_at = min(WAKE_AT, maxsize) if maxsize else WAKE_AT
        self._waiting = 0
        self._new_markers = 0
        self.markers: list[FlushMarker] = []
        self.open = True
        self.failure: BaseException | None = None  # the engine stopped: drop, don't raise
        self.wake: Callable[[], None] = lambda: None  # set by the engine once it runs

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, item: Any) -> None:
        queue = self._queue
        with self._lock:
            if not self.open:
                self._closed()
                return
            if self._maxsize and len(queue) >= self._maxsize:
                self._full()  # returns only once there is room, or raises
                if not self.open:
                    raise MetranaLoggerClosedError("the logger was closed while log() waited for room")
                if self._maxsize and len(queue) >= self._maxsize:
                    return  # DropNew: counted in _full
            queue.append(item)
            self._counters.accepted += 1
            length = len(queue)
        if length == self._wake_at:
            self.wake()

    def put_many(self, items: list[Any]) -> None:
        """Several items under one lock acquisition (dict-form ``log()``)."""
        queue = self._queue
        with self._lock:
            if not self.open:
                self._closed(len(items))
                return
            for item in items:
                if self._maxsize and len(queue) >= self._maxsize:
                    self._full()
                    if not self.open:
                        raise MetranaLoggerClosedError("the logger was closed while log() waited")
                    if len(queue) >= self._maxsize:
                        continue
                queue.append(item)
                self._counters.accepted += 1
            length = len(queue)
        if length >= self._wake_at:
            self.wake()

    def _closed(self, count: int = 1) -> None:
        if self.failure is None:
            raise MetranaLoggerClosedError("the logger is closed; call init() to start a new run")
        # The engine failed (reported through the error strategy): the training loop goes on,
        # and the points are counted as discarded rather than raising from every log().
        self._counters.accepted += count
        self._counters.discarded += count

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.failure = error
            self.open = False
            self._space.notify_all()

    def _full(self) -> None:
        """Called with the lock held when the queue is at its bound."""
        strategy = self._strategy
        if strategy is BackpressureStrategy.DropNew:
            self._counters.dropped_backpressure += 1
            return
        if strategy is BackpressureStrategy.Raise or not self._can_block:
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
        """Everything queued, in order (engine side)."""
        return self.drain_with_markers()[0]

    def drain_with_markers(self) -> tuple[list[Any], bool]:
        """Everything queued, and whether flush markers are among it."""
        with self._lock:
            items = list(self._queue)
            self._queue.clear()
            markers, self._new_markers = self._new_markers, 0
            if self._waiting:
                self._space.notify_all()
        return items, bool(markers)

    def put_marker(self, marker: FlushMarker) -> None:
        """Queue a flush barrier behind every point put so far (ignores the bound)."""
        with self._lock:
            if not self.open:
                raise MetranaLoggerClosedError("the logger is closed; nothing to flush")
            self._queue.append(marker)
            self._new_markers += 1
            self.markers.append(marker)
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
            self._space.notify_all()

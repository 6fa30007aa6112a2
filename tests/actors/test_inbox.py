"""The Inbox applies backpressure in the caller's thread: DropNew, Block, Raise."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import metrana
from metrana._enums import BackpressureStrategy
from metrana._inbox import Inbox
from metrana._stats import Counters


def inbox(strategy: BackpressureStrategy, maxsize: int = 3) -> tuple[Inbox, Counters]:
    counters = Counters()
    return Inbox(counters, maxsize=maxsize, strategy=strategy), counters


def test_drop_new_discards_and_counts() -> None:
    """With a full queue the new point is dropped and counted, the queued ones kept."""
    box, counters = inbox(BackpressureStrategy.DropNew)
    for i in range(5):
        box.put(i)
    assert box.drain() == [0, 1, 2]
    assert (counters.accepted, counters.dropped_backpressure) == (3, 2)


def test_raise_raises_and_keeps_the_queue() -> None:
    """Raise: MetranaEventQueueFullError naming the bound; nothing queued is lost."""
    box, counters = inbox(BackpressureStrategy.Raise)
    for i in range(3):
        box.put(i)
    with pytest.raises(metrana.MetranaEventQueueFullError, match="3 points"):
        box.put(3)
    assert box.drain() == [0, 1, 2] and counters.dropped_backpressure == 0


def test_block_waits_until_the_engine_drains() -> None:
    """Block: put() waits in the caller's thread and returns once there is room."""
    box, counters = inbox(BackpressureStrategy.Block, maxsize=2)
    woken = threading.Event()
    box.wake = woken.set
    box.put(0)
    box.put(1)
    done = threading.Event()
    def put_third() -> None:
        box.put(2)
        done.set()

    thread = threading.Thread(target=put_third)
    thread.start()
    assert woken.wait(5)  # the blocked caller asked the engine to drain
    assert not done.is_set()
    assert box.drain() == [0, 1]
    thread.join(5)
    assert done.is_set() and box.drain() == [2]
    assert counters.accepted == 3


def test_close_releases_blocked_callers_with_a_clear_error() -> None:
    """A caller blocked on a full queue is released by close() with LoggerClosedError."""
    box, _ = inbox(BackpressureStrategy.Block, maxsize=1)
    box.put(0)
    errors: list[BaseException] = []

    def blocked() -> None:
        try:
            box.put(1)
        except metrana.MetranaLoggerClosedError as exc:
            errors.append(exc)

    woken = threading.Event()
    box.wake = woken.set
    thread = threading.Thread(target=blocked)
    thread.start()
    assert woken.wait(5)
    box.close()
    thread.join(5)
    assert len(errors) == 1


def test_many_threads_lose_nothing() -> None:
    """Concurrent puts from 8 threads are all queued, each thread's in its own order."""
    box, counters = inbox(BackpressureStrategy.DropNew, maxsize=0)
    def put_all(t: int) -> None:
        for i in range(5000):
            box.put((t, i))

    threads = [threading.Thread(target=put_all, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    items = box.drain()
    assert counters.accepted == len(items) == 40_000
    for t in range(8):
        assert [i for tt, i in items if tt == t] == list(range(5000))


def test_lock_free_appends_and_concurrent_drains_lose_nothing() -> None:
    """The fast path (deque append) from 8 threads while the engine drains: every item once,
    each thread's in order, and the accepted count exact."""
    box, counters = inbox(BackpressureStrategy.DropNew, maxsize=0)
    drained: list[Any] = []
    stop = threading.Event()

    def engine() -> None:
        while not stop.is_set():
            drained.extend(box.drain())
        drained.extend(box.drain())

    drainer = threading.Thread(target=engine)
    drainer.start()
    def append_all(t: int) -> None:
        for i in range(20_000):
            box.append((t, i))

    threads = [threading.Thread(target=append_all, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    drainer.join()
    assert len(drained) == counters.accepted == 160_000
    for t in range(8):
        assert [i for tt, i in drained if tt == t] == list(range(20_000))

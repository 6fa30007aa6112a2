"""The Inbox applies backpressure in the caller's thread: DropNew, Block, Raise."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import metrana
from metrana._enums import BackpressureStrategy
from metrana._inbox import Inbox
from metrana._items import SERIES, Points
from metrana._series import SeriesKey
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


def _key(name: str, index: int) -> SeriesKey:
    key = SeriesKey(False, name, "ML_STEP", ())
    key.index = index
    return key


def test_columns_count_as_queued_until_taken_and_keep_appends_made_meanwhile() -> None:
    """A column's pairs are pending in a snapshot, accepted once taken; a pair appended after
    a take waits for the next one (nothing counted twice or lost)."""
    counters = Counters()
    box = Inbox(counters, plain_names={"loss": 7})
    key = _key("loss", 7)
    for i in range(5):
        box.put_point(key, None, float(i), 1_000 + i)
    append = box.named["loss"]  # the fast path's column: log("loss", 0.5)
    assert box.snapshot().pending == 5
    taken = box.take_columns()
    assert [(p.series, list(p)) for p in taken] == [
        (7, [(7, None, None, float(i), 1_000 + i) for i in range(5)])]
    append((5.0, 1_005))
    assert counters.accepted == 5 and box.snapshot().logged == 6
    box.put_point(key, None, 6.0, 1_006)
    assert box.named["loss"] == append  # the same list: a caller's append never goes stale
    assert [list(p) for p in box.take_columns()] == [
        [(7, None, None, 5.0, 1_005), (7, None, None, 6.0, 1_006)]]
    assert box.take_columns() == [] and counters.accepted == box.snapshot().logged == 7


def test_only_a_plain_name_is_on_the_fast_path() -> None:
    """A series with labels (or a scale, or evaluation) has a column, but log()'s fast path
    finds only the plain names: the others are resolved, and checked, by the general path."""
    box = Inbox(Counters(), plain_names={"loss": 0})
    box.put_point(_key("loss", 0), None, 1.0, 10)
    labelled = SeriesKey(False, "acc", "ML_STEP", (("split", "a"),))
    labelled.index = 1
    box.put_point(labelled, None, 2.0, 11)
    assert set(box.named) == {"loss"}
    assert sorted((p.series, len(p)) for p in box.take_columns()) == [(0, 1), (1, 1)]


def test_demote_moves_a_column_into_the_queue_in_order_before_later_items() -> None:
    """A manual step or vectorized call after column points: the column's points go to the
    deque first, as items, so the series' order survives; the series never opens a column
    again, and leaves the fast path."""
    box = Inbox(Counters(), plain_names={"loss": 3})
    key = _key("loss", 3)
    box.put_point(key, None, 1.0, 10)
    box.put_point(key, None, 2.0, 11)
    box.put_point(key, 9, 3.0, 12)
    box.put_point(key, None, 4.0, 13)
    assert key.manual_seen and "loss" not in box.named
    assert box.take_columns() == []
    assert box.drain() == [(3, None, None, 1.0, 10), (3, None, None, 2.0, 11),
                           (3, 9, None, 3.0, 12), (3, None, None, 4.0, 13)]


def test_a_series_in_the_deque_never_opens_a_column() -> None:
    """A series whose first point went to the deque (a bounded queue's, a vectorized call's,
    the engine's own) keeps to the deque: its points are never in both at once."""
    box = Inbox(Counters(), plain_names={"cpu": 0})
    key = _key("cpu", 0)
    box.put_internal([(key, 1.0)], 10)
    box.put_point(key, None, 2.0, 11)
    assert box.named == {} and box.take_columns() == []
    assert box.drain() == [(0, None, None, 1.0, 10), (0, None, None, 2.0, 11)]


def test_a_column_point_after_close_is_refused_like_any_other() -> None:
    box = Inbox(Counters())
    key = _key("loss", 1)
    box.put_point(key, None, 1.0, 1)
    box.close()
    with pytest.raises(metrana.MetranaLoggerClosedError):
        box.put_point(key, None, 2.0, 2)


def test_points_taken_from_a_column_slice_and_iterate_as_items() -> None:
    """The batcher splits a column's points at the request limit and a refused batch is split
    point by point: slices keep every point once, in order, as the items they stand for."""
    points = Points(3, [x for i in range(10) for x in (float(i), 100 + i)])
    assert len(points) == 10 and points[SERIES] == 3
    head, tail = points[:4], points[4:]
    assert (len(head), len(tail), len(points[8:20]), len(points[5:2])) == (4, 6, 2, 0)
    assert list(head) + list(tail) == [(3, None, None, float(i), 100 + i) for i in range(10)]
    with pytest.raises(IndexError):
        points[::2]

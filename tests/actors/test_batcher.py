"""Batcher: at most 10,000 points a request, a trickle still sent promptly, lanes kept apart."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from metrana._actors.batcher import Batcher
from metrana._actors.parcel import spool_points
from metrana._actors.step_counter import SeriesState
from metrana._series import SeriesKey


def state(name: str) -> SeriesState:
    return SeriesState(SeriesKey(False, name, "ML_STEP", ()))


def items(n: int) -> list[Any]:
    return [(None, None, None, float(i), i) for i in range(n)]


async def run_batcher(chunks: list[Any], lanes: int = 2, **options: Any
                      ) -> list[list[tuple[float, Any]]]:
    """Feed chunks, then return what each lane received and when (trio clock)."""
    send, receive = trio.open_memory_channel[Any](100)
    lane_channels = [trio.open_memory_channel[Any](100) for _ in range(lanes)]
    batcher = Batcher(receive, [s for s, _ in lane_channels], **options)
    received: list[list[tuple[float, Any]]] = [[] for _ in range(lanes)]

    async def collect(index: int) -> None:
        async for batch in lane_channels[index][1]:
            received[index].append((trio.current_time(), batch))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        for index in range(lanes):
            nursery.start_soon(collect, index)
        async with send:
            for chunk in chunks:
                await send.send(chunk)
                await trio.sleep(0)
            await trio.sleep(10)  # plenty of (virtual) time for age-based cuts
    return received


async def test_batches_never_exceed_the_cap_and_keep_order(autojump_clock: trio.abc.Clock) -> None:
    """25,000 points of one series → 10,000 + 10,000 + 5,000, steps continuing in order."""
    loss = state("loss")
    received = await run_batcher([[(loss, 0, items(25_000))]])
    batches = [batch for _, batch in received[0]]
    assert [b.count for b in batches] == [10_000, 10_000, 5_000]
    steps = [p[0] for b in batches for state_, spans in b.parcel for p in spool_points(spans)]
    assert steps == list(range(25_000))


async def test_a_trickle_is_cut_by_age(autojump_clock: trio.abc.Clock) -> None:
    """A few points wait at most max_age before they are handed to a dispatcher."""
    loss = state("loss")
    start = trio.current_time()
    received = await run_batcher([[(loss, 0, items(3))]], max_age=0.2)
    (when, batch), = received[0]
    assert batch.count == 3
    assert when - start <= 0.2 + 1e-6
    assert received[1] == []  # the other lane got nothing


@pytest.mark.timeout(20)
@pytest.mark.parametrize("arrival", [0.05, 0.3, 3.85])
async def test_a_batch_is_cut_when_its_age_is_reached_whatever_the_clock_reads(
        autojump_clock: trio.abc.Clock, arrival: float) -> None:
    """Points arriving at 0.05 s are due at 0.05 + 0.2 = 0.25, where 0.25 - 0.2 rounds to
    0.04999…: the batch must still be cut then (the Batcher used to spin on the expired
    deadline forever, hanging the engine under trio's MockClock, busy-waiting under a real one)."""
    await trio.sleep_until(arrival)
    received = await run_batcher([[(state("loss"), 0, items(3))]], max_age=0.2)
    (when, batch), = received[0]
    assert batch.count == 3 and when == arrival + 0.2


async def test_a_series_keeps_its_lane_and_series_spread_round_robin(
        autojump_clock: trio.abc.Clock) -> None:
    """Every point of a series goes to one lane (one dispatcher: its requests stay in order);
    new series take the lanes in turn."""
    a, b, c = state("a"), state("b"), state("c")
    received = await run_batcher([[(a, 0, items(5)), (b, 0, items(7))], [(c, 0, items(2))],
                                  [(a, 5, items(4)), (b, 7, items(1))]])
    lanes = {id(s): [index for index, lane in enumerate(received)
                     for _, batch in lane for entry, _ in batch.parcel if entry is s]
             for s in (a, b, c)}
    assert set(lanes[id(a)]) == {0} and set(lanes[id(c)]) == {0}
    assert set(lanes[id(b)]) == {1}
    assert sum(batch.count for lane in received for _, batch in lane) == 19

"""Batcher: at most 10,000 points a request, a trickle still sent promptly, lanes kept apart."""

from __future__ import annotations

from typing import Any

import trio

from metrana._actors.batcher import Batcher
from metrana._actors.parcel import run_points
from metrana._actors.step_counter import SeriesState
from metrana._series import SeriesKey


def state(name: str, lane: int) -> SeriesState:
    return SeriesState(SeriesKey(False, name, "ML_STEP", ()), lane)


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
    loss = state("loss", 0)
    received = await run_batcher([[(loss, 0, items(25_000))]])
    batches = [batch for _, batch in received[0]]
    assert [b.count for b in batches] == [10_000, 10_000, 5_000]
    steps = [p[0] for b in batches for state_, runs in b.parcel for p in run_points(runs)]
    assert steps == list(range(25_000))


async def test_a_trickle_is_cut_by_age(autojump_clock: trio.abc.Clock) -> None:
    """A few points wait at most max_age before they are handed to a dispatcher."""
    loss = state("loss", 1)
    start = trio.current_time()
    received = await run_batcher([[(loss, 0, items(3))]], max_age=0.2)
    (when, batch), = received[1]
    assert batch.count == 3
    assert when - start <= 0.2 + 1e-6
    assert received[0] == []  # the other lane got nothing


async def test_series_go_to_their_own_lane(autojump_clock: trio.abc.Clock) -> None:
    """Each series' points land in the lane the StepCounter gave it."""
    a, b = state("a", 0), state("b", 1)
    received = await run_batcher([[(a, 0, items(5)), (b, 0, items(7))]])
    assert [batch.count for _, batch in received[0]] == [5]
    assert [batch.count for _, batch in received[1]] == [7]

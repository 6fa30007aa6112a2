"""Batcher: groups points by series into per-lane batches of at most 10,000 points.

A series belongs to one lane (one dispatcher) for its whole life, so its points reach the
service in order. A batch is cut when it is full, or when its oldest point has waited
``max_age`` seconds, so a slow trickle is still delivered promptly.
"""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from typing import Any

import attrs
import trio

from .._items import VALUE
from .flush import FlushMarker
from .parcel import Parcel
from .step_counter import Numbered, SeriesSpan, SeriesState

__all__ = ["MAX_BATCH_POINTS", "Batch", "Batcher", "ToLane"]

MAX_BATCH_POINTS = 10_000


@attrs.frozen
class Batch:
    """Points of one lane as a parcel: ``[(series state, spans)]`` (see :mod:`.parcel`)."""

    parcel: Parcel
    count: int
    # How much of a request it fills, in scalar points: a histogram or cloud weighs more than
    # one (metrana._values), so a request stays a few MB whatever it holds.
    weight: int = attrs.field()

    @weight.default
    def _weight(self) -> int:
        return self.count


# What the Batcher sends a lane's Dispatcher: a batch, or a flush marker (every lane gets it).
ToLane = Batch | FlushMarker


class Batcher:
    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[Numbered],
        lanes: list[trio.MemorySendChannel[ToLane]],
        *,
        max_points: int = MAX_BATCH_POINTS,
        max_age: float = 0.2,
    ) -> None:
        self._receive = receive
        self._lanes = lanes
        self._max_points = max_points
        self._max_age = max_age
        self._pending: list[dict[SeriesState, list[Any]]] = [{} for _ in lanes]
        self._counts = [0] * len(lanes)
        self._weights = [0] * len(lanes)  # the same as counts unless histograms or clouds
        self._since = [math.inf] * len(lanes)
        # A series belongs to one lane for its whole life (its requests then go one after
        # another); lanes are handed out round-robin as series appear.
        self._lane_of: dict[SeriesState, int] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with AsyncExitStack() as stack:
            for lane in self._lanes:
                await stack.enter_async_context(lane)
            await stack.enter_async_context(self._receive)
            task_status.started()
            while True:
                chunk = None
                # Only the receive may be interrupted by the age deadline: a cut batch being
                # handed to a dispatcher must never be cancelled half-way.
                with trio.move_on_at(min(self._since) + self._max_age):
                    try:
                        chunk = await self._receive.receive()
                    except trio.EndOfChannel:
                        break
                if chunk is None:
                    await self._cut_expired()
                elif type(chunk) is FlushMarker:
                    chunk.arm(len(self._lanes))
                    for index, lane in enumerate(self._lanes):
                        await self._cut(index)
                        await lane.send(chunk)
                else:
                    await self._add(chunk)
            for index in range(len(self._lanes)):
                await self._cut(index)

    async def _add(self, chunk: list[SeriesSpan]) -> None:
        pending, counts, since = self._pending, self._counts, self._since
        limit = self._max_points
        now = trio.current_time()
        lane_of = self._lane_of
        for state, first, items in chunk:
            lane = lane_of.get(state)
            if lane is None:
                lane = lane_of[state] = len(lane_of) % len(self._lanes)
            if since[lane] == math.inf:
                since[lane] = now
            if state.key.kind:
                await self._add_weighted(lane, state, first, items, now)
                continue
            while items:
                room = limit - counts[lane]
                if len(items) > room:  # split: a request carries at most `limit` points
                    head, items = items[:room], items[room:]
                    pending[lane].setdefault(state, []).append((first, head))
                    counts[lane] += room
                    self._weights[lane] += room
                    first = None if first is None else first + room
                else:
                    pending[lane].setdefault(state, []).append((first, items))
                    counts[lane] += len(items)
                    self._weights[lane] += len(items)
                    items = []
                if self._weights[lane] >= limit:
                    await self._cut(lane)
                    if items:
                        since[lane] = now

    async def _add_weighted(self, lane: int, state: SeriesState, first: int | None,
                            items: Any, now: float) -> None:
        """Histograms or clouds, one at a time: the lane is cut when the next would overfill
        its request (a value heavier than a whole request goes alone)."""
        weights, limit = self._weights, self._max_points
        for index, item in enumerate(items):
            weight = item[VALUE].weight
            if weights[lane] and weights[lane] + weight > limit:
                await self._cut(lane)
                self._since[lane] = now
            step = None if first is None else first + index
            self._pending[lane].setdefault(state, []).append((step, [item]))
            self._counts[lane] += 1
            weights[lane] += weight
        if weights[lane] >= limit:
            await self._cut(lane)

    async def _cut_expired(self) -> None:
        now = trio.current_time()
        for lane, since in enumerate(self._since):
            # The receive's deadline was this very sum: ``now - max_age`` can round below
            # ``since`` (0.25 - 0.2 < 0.05), and the loop would spin on an expired deadline.
            if since + self._max_age <= now:
                await self._cut(lane)

    async def _cut(self, lane: int) -> None:
        if not self._counts[lane]:
            return
        batch = Batch(list(self._pending[lane].items()), self._counts[lane], self._weights[lane])
        self._pending[lane] = {}
        self._counts[lane] = 0
        self._weights[lane] = 0
        self._since[lane] = math.inf
        await self._lanes[lane].send(batch)

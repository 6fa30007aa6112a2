"""Pump: moves what callers queued in the Inbox into the engine, in chunks.

The Inbox is filled from callers' threads without waking the engine (waking a trio thread per
``log()`` costs tens of microseconds); the pump looks every ``POLL_INTERVAL`` instead, or at
once when someone waits (a flush, a close, a caller blocked by backpressure) and calls
:meth:`Pump.wake`. It moves at most ``CHUNK`` items at a time, so the memory behind the inbox
stays small, and keeps flush markers in their place between the points around them.

Columns (see :mod:`metrana._items`) are taken whole at each look, after the deque's chunk and
sent before it: a flush marker in the chunk was queued after every column point logged before
it, so those points are in this take (or an earlier one) and reach the engine ahead of it.
"""

from __future__ import annotations

from typing import Any

import trio

from .._inbox import Inbox
from .._items import Columns, Item
from .._vector import Block
from .flush import FlushMarker

__all__ = ["CHUNK", "POLL_INTERVAL", "Intake", "Pump"]

# What the pump sends the StepCounter: a take of the columns, a chunk of the deque (points and
# vectorized blocks, in the order they were queued), or a flush marker between two chunks.
Intake = Columns | list[Item | Block] | FlushMarker

POLL_INTERVAL = 0.05  # how often the pump looks at the inbox when nobody wakes it
CHUNK = 10_000  # items moved at a time


class Pump:
    def __init__(self, inbox: Inbox, send: trio.MemorySendChannel[Intake]) -> None:
        self._inbox = inbox
        self._send = send
        self._wake = trio.Event()

    def wake(self) -> None:
        """Look at the inbox now (engine thread)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        inbox, send = self._inbox, self._send
        async with send:
            task_status.started()
            while True:
                if len(inbox) < CHUNK:  # with a backlog, go straight on
                    with trio.move_on_after(POLL_INTERVAL):
                        await self._wake.wait()
                    self._wake = trio.Event()
                items, markers = inbox.drain_with_markers(CHUNK)
                columns = inbox.take_columns()
                if columns:
                    await send.send(columns)
                if markers:
                    await self._send_split(items)
                elif items:
                    await send.send(items)
                elif not columns and not inbox.open:
                    return  # closed and empty: end of stream travels downstream

    async def _send_split(self, items: list[Any]) -> None:
        """Points before a marker, the marker, points after it: the barrier keeps its place."""
        chunk: list[Item | Block] = []
        for item in items:
            if type(item) is FlushMarker:
                if chunk:
                    await self._send.send(chunk)
                    chunk = []
                await self._send.send(item)
            else:
                chunk.append(item)
        if chunk:
            await self._send.send(chunk)

"""Flush markers: a barrier that travels the pipeline behind every point logged before it."""

from __future__ import annotations

import threading
from typing import final

import attrs
import trio

__all__ = ["FlushMarker"]


@final  # so ``type(item) is FlushMarker`` tells the channels' message types apart
@attrs.define(eq=False)
class FlushMarker:
    """Queued like a point; the Batcher cuts every lane and hands each dispatcher a copy.

    A dispatcher handles its lane in order, so when every lane has acknowledged the marker,
    every point logged before it has been settled: acknowledged by the service, durable in the
    spool, or counted as rejected/failed.
    """

    lanes: int = 0
    done: threading.Event = attrs.field(factory=threading.Event)
    trio_done: trio.Event = attrs.field(factory=trio.Event)
    aborted: bool = False  # released because the engine stopped, not because lanes settled

    def arm(self, lanes: int) -> None:
        self.lanes = lanes

    def ack(self) -> None:
        self.lanes -= 1
        if self.lanes <= 0:
            self.release()

    def release(self, *, aborted: bool = False) -> None:
        if not self.done.is_set():
            self.aborted = aborted
            self.done.set()
            self.trio_done.set()

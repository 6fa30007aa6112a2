"""Where batches go right now: the engine's delivery mode, one enum, one owner.

The dispatchers read it before each batch; the run creator, the Recovery actor and the engine
move it from one mode to the next. It is the small interface actors share instead of calling
back into the engine::

    DIRECT ──(a batch's retries are spent, or an earlier session left a spool)──► OUTAGE
    OUTAGE ──(Recovery delivered a round; more was spooled meanwhile)──► CATCHING_UP
    CATCHING_UP ──(the spool is empty)──► DIRECT
    CATCHING_UP ──(CATCH_UP_GRACE ran out: the service went away again?)──► OUTAGE
    any ──(close ran out of time, or Ctrl-C during close)──► FORCED
    OFFLINE (from the start, for good)
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path

import trio

__all__ = ["CATCH_UP_GRACE", "Delivery", "DeliveryMode"]

CATCH_UP_GRACE = 5.0  # at most this long do new batches wait for the spool's last records


class DeliveryMode(enum.Enum):
    DIRECT = "direct"  # dispatchers POST their batches (once the run exists)
    OUTAGE = "outage"  # retries were spent: this and every later batch go to the spool, so no
    #                    newer point overtakes an older one; Recovery replays them, oldest first
    CATCHING_UP = "catching up"  # Recovery replays the last records spooled while it worked;
    #                    new batches wait in memory (briefly) so the spool can become empty
    FORCED = "forced"  # close ran out of time or was interrupted: everything left to the spool
    OFFLINE = "offline"  # no network at all: the spool is the destination


_SPOOLING = (DeliveryMode.OUTAGE, DeliveryMode.FORCED, DeliveryMode.OFFLINE)


class Delivery:
    def __init__(self, *, offline: bool, spool_dir: Path | None,
                 say: Callable[[str, str], None]) -> None:
        self.mode = DeliveryMode.OFFLINE if offline else DeliveryMode.DIRECT
        self._spool_dir = spool_dir
        self._say = say
        self.run_ready = trio.Event()  # the run exists on the service (or there is none: offline)
        self._go = trio.Event()  # dispatchers may go on: the run exists, or all goes to disk
        self.recovery_wake = trio.Event()  # something for Recovery to do
        self.discard_queued = False  # CompletePending: batches not yet sent are dropped
        self.contact_at = 0.0  # (trio time) when the service last answered a request of ours
        if offline:
            self.run_ready.set()
            self._go.set()

    @property
    def spool_only(self) -> bool:
        return self.mode in _SPOOLING

    @property
    def outage(self) -> bool:
        return self.mode in (DeliveryMode.OUTAGE, DeliveryMode.CATCHING_UP)

    @property
    def can_spool(self) -> bool:
        return self._spool_dir is not None

    async def wait_sendable(self) -> None:
        """Before a dispatcher handles a batch: until it may send (or spool) it."""
        if self.mode is not DeliveryMode.CATCHING_UP:
            await self._go.wait()
            return
        with trio.move_on_after(CATCH_UP_GRACE):
            await self._go.wait()
            return
        # Recovery needs longer than a moment (the service went away again?): stop holding
        # batches in memory, spool them as before.
        if self.mode is DeliveryMode.CATCHING_UP:
            self.mode = DeliveryMode.OUTAGE
        self._go.set()

    def run_created(self) -> None:
        self.run_ready.set()
        self._go.set()
        self.contacted()

    def contacted(self) -> None:
        """The service answered us just now (the heartbeat waits for a quiet spell)."""
        self.contact_at = trio.current_time()

    def enter_outage(self, reason: str, *, announce: bool = True) -> None:
        """From now on every batch goes to the spool until Recovery has replayed it all."""
        if self.mode is DeliveryMode.DIRECT and self._spool_dir is not None:
            self.mode = DeliveryMode.OUTAGE
            self._go.set()
            self.recovery_wake.set()
            if announce:
                self._say("WARNING", f"the service is unreachable ({reason}); points are "
                                     f"spooled to {self._spool_dir} and sent when it answers")

    def catch_up(self) -> None:
        """Recovery is about to replay the last records: hold new batches for a moment."""
        if self.mode is DeliveryMode.OUTAGE:
            self.mode = DeliveryMode.CATCHING_UP
            self._go = trio.Event()

    def recovered(self) -> None:
        """The spool is empty: send directly again."""
        if self.mode in (DeliveryMode.OUTAGE, DeliveryMode.CATCHING_UP):
            self.mode = DeliveryMode.DIRECT
        self._go.set()

    def force(self) -> None:
        """Close ran out of time (or was interrupted): whatever is left goes to the spool."""
        if self.mode is not DeliveryMode.OFFLINE:
            self.mode = DeliveryMode.FORCED
        self._go.set()

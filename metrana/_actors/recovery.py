"""Recovery: during an outage, wait for the service, then replay the spool and hand back.

Woken when the run enters an outage (a batch's retries were spent, or an earlier session left
points on disk). It creates the run if that never happened, replays every segment oldest first
(:mod:`.replay`), and switches the run back to direct delivery only once the spool is empty —
with no await between that check and the switch, so no batch can be sent ahead of one spooled
before it. While logging goes on, new batches keep being spooled during each replay, so before
the last round it holds them in memory (``CATCHING_UP``, a few seconds at most).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import trio

from .._delivery import Delivery, DeliveryMode
from .._exceptions import MetranaError
from .._run_spool import RunSpool
from .._stats import Counters
from .._transport import RetryPolicy, RunTarget
from .replay import replay_directory
from .run_creator import RunCreator

__all__ = ["Recovery"]


class Recovery:
    def __init__(self, client: httpx.AsyncClient, *, delivery: Delivery, spool: RunSpool,
                 creator: RunCreator, target: RunTarget, policy: RetryPolicy, counters: Counters,
                 lanes: int, report: Callable[[BaseException], None],
                 say: Callable[[str, str], None], on_fatal: Callable[[BaseException], None]
                 ) -> None:
        self._client = client
        self._delivery = delivery
        self._spool = spool
        self._creator = creator
        self._target = target
        self._policy = policy
        self._counters = counters
        self._lanes = lanes
        self._report = report
        self._say = say
        self._on_fatal = on_fatal
        self.scope = trio.CancelScope()  # cancelled when everything left goes to disk anyway
        self._dispatchers_done = False
        self.from_others = 0  # points of other sessions (ended processes) it delivered

    def dispatchers_done(self) -> None:
        """No batch will come any more: finish once the spool is empty (or at once if it is)."""
        self._dispatchers_done = True
        self._delivery.recovery_wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        delivery = self._delivery
        with self.scope:
            while True:
                await delivery.recovery_wake.wait()
                delivery.recovery_wake = trio.Event()
                if delivery.outage:
                    await self._replay_until_empty()
                if self._dispatchers_done and not delivery.outage:
                    return

    async def _replay_until_empty(self) -> None:
        delivery, spool = self._delivery, self._spool
        assert spool.directory is not None
        try:
            await self._creator.ensure(persistent=True)
        except MetranaError as exc:
            self._on_fatal(exc)
            return
        replayed = 0
        while True:
            result = await replay_directory(
                self._client, spool.directory, self._target, self._policy, self._counters,
                self._report, own_session=self._target.session_id, persistent=True,
                lanes=self._lanes,
            )
            replayed += result.delivered
            self.from_others += result.others
            # No await between this check and the switch: a batch spooled meanwhile would
            # otherwise be overtaken by the next one sent straight to the network.
            if spool.empty():
                delivery.recovered()
                self._say("INFO", f"the service answers again; {replayed:,} spooled points "
                                  "delivered, sending directly again")
                return
            if result.delivered and delivery.mode is DeliveryMode.OUTAGE:
                # Logging goes on, so batches were spooled during this round, and would be in
                # every round: hold new ones for a moment while the last records are replayed.
                delivery.catch_up()
            spool.rotate()

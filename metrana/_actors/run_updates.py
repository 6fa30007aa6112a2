"""RunUpdates: what the run hears besides points — attribute changes, and a heartbeat.

- **Attribute changes** made while the run is open (``run.add_tags()``, ``remove_tags()``,
  ``set_notes()``) are queued by the caller's thread (a ``deque``: ``append`` is atomic) and
  sent as soon as the run exists, in the order they were made, each once.
- **The heartbeat**: the server tells a run that is still running from one whose process died
  by when it last heard from its session (``metrana serve --heartbeat-timeout``, 2 minutes by
  default). Batches of points say so on their own; a run that logs nothing for
  :data:`HEARTBEAT_S` gets an empty update (its session, its run, no points).

Both go through the dispatchers' :func:`~metrana._transport.post_with_retries` (the same client,
headers and error handling) and neither ever counts as points. Neither is sent while the
service is unreachable and batches are being spooled (an outage is the spool's business: a
heartbeat would only be one more failed request); the heartbeat resumes when delivery does.
A run the service refuses (deleted or renamed on the server: HTTP 410) is said once, and no
more heartbeats are sent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import httpx
import trio

from .._delivery import Delivery
from .._exceptions import MetranaApiError, MetranaConnectionError
from .._stats import Counters
from .._transport import RetryPolicy, RunTarget, post_with_retries
from .._wire import encode_update, is_ok

__all__ = ["HEARTBEAT_S", "RunUpdates"]

HEARTBEAT_S = 30.0


class RunUpdates:
    def __init__(self, client: httpx.AsyncClient, target: RunTarget, delivery: Delivery, *,
                 policy: RetryPolicy, counters: Counters, say: Callable[[str, str], None],
                 report: Callable[[BaseException], None], interval: float = HEARTBEAT_S) -> None:
        self._client = client
        self._target = target
        self._delivery = delivery
        self._policy = policy
        self._counters = counters
        self._say = say
        self._report = report
        self.interval = interval
        self.pending: deque[list[dict[str, Any]]] = deque()  # appended by callers' threads
        self._wake = trio.Event()
        self._closing = False
        self._refused = False
        self._tried_at = 0.0  # (trio time) our last attempt, answered or not
        self.heartbeats = 0  # sent and answered (tests, diagnostics)

    def wake(self) -> None:
        """Engine side: something was queued, or the engine is closing."""
        self._wake.set()

    def finish(self) -> None:
        """Engine side: send what is queued, then stop."""
        self._closing = True
        self._wake.set()

    def _body(self, attributes: list[dict[str, Any]]) -> bytes:
        t = self._target
        return encode_update(t.session_id, t.workspace, t.project, t.run_name, (), attributes)

    async def _send(self, attributes: list[dict[str, Any]]) -> bool:
        """One update; True when it was answered (accepted or refused), False when the
        service could not be reached (the caller keeps what it holds)."""
        policy = self._policy if attributes else attrs.evolve(self._policy, max_attempts=1)
        self._tried_at = trio.current_time()
        try:
            response = await post_with_retries(self._client, "/runs:update",
                                               self._body(attributes), policy, self._counters)
        except MetranaConnectionError:
            return False
        self._delivery.contacted()
        if is_ok(response.status_code):
            if not attributes:
                self.heartbeats += 1
            return True
        what = "attribute update" if attributes else "heartbeat"
        error = MetranaApiError(
            f"the service refused the {what} of run {self._target.workspace}/"
            f"{self._target.project}/{self._target.run_name} with HTTP {response.status_code}: "
            f"{response.text[:500]}", status=response.status_code, body=response.text[:2000])
        if attributes:
            self._report(error)
        elif not self._refused:
            self._say("WARNING", f"{error}; no more heartbeats are sent")
        self._refused = True
        return True

    def _blocked(self) -> bool:
        d = self._delivery
        return not d.run_ready.is_set() or d.spool_only or d.outage

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while not self._delivery.run_ready.is_set() and not self._closing:
            with trio.move_on_after(0.5):  # (a close is noticed within this)
                await self._delivery.run_ready.wait()
        while True:
            # After a quiet spell, or (the service not answering) an interval after our last
            # try: never a request in a loop.
            quiet_until = max(self._delivery.contact_at, self._tried_at) + self.interval
            with trio.move_on_at(quiet_until):
                await self._wake.wait()
            self._wake = trio.Event()
            if self._blocked():
                if self._closing:
                    break
                if trio.current_time() >= quiet_until:
                    self._delivery.contacted()  # no heartbeat during an outage: ask later
                continue
            while self.pending:
                if not await self._send(self.pending[0]):
                    break
                self.pending.popleft()
            if self._closing:
                break
            if (not self._refused and not self.pending
                    and trio.current_time() >= quiet_until):
                await self._send([])
        if self.pending:
            count = sum(len(change) for change in self.pending)
            self._report(MetranaConnectionError(
                f"{count} attribute change(s) of run {self._target.run_name} (tags, notes) "
                "could not be delivered before close: the service was unreachable"))

"""The engine: one trio task tree that owns every actor of one logger.

It runs either on a background thread (``init()``, ``session()``) or inside the caller's own
nursery (``open_session()``). Closing is a cancellation policy over three nested scopes:

- intake (pump, StepCounter, Batcher) — cancelled at once by CompletePending;
- dispatch (the Dispatchers and the run creator) — given ``close_timeout`` to finish;
- the ErrorCollector — closed last, so nothing reported during shutdown is lost.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from typing import Any

import httpx
import trio

from ._actors.batcher import Batch, Batcher
from ._actors.dispatcher import Dispatcher, RetryPolicy, RunTarget, post_with_retries
from ._actors.error_collector import ErrorCollector
from ._actors.step_counter import StepCounter
from ._actors.supervisor import supervised
from ._config import Settings
from ._enums import CloseStrategy, ResumeStrategy
from ._exceptions import (
    MetranaApiError,
    MetranaError,
    MetranaRunAlreadyExistsError,
)
from ._inbox import Inbox
from ._stats import Counters
from ._wire import encode_update

__all__ = ["Engine"]

POLL_INTERVAL = 0.05  # how often the pump looks at the inbox when nobody wakes it
BATCH_MAX_AGE = 0.2


class _Control:
    discard_queued = False


class Engine:
    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        counters: Counters,
        *,
        say: Callable[[str, str], None],
        attributes: list[dict[str, Any]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        batch_max_age: float = BATCH_MAX_AGE,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.counters = counters
        self._say = say
        self._attributes = attributes or []
        self._transport = transport
        self._retry = retry or RetryPolicy()
        self._batch_max_age = batch_max_age
        self.session_id = random.getrandbits(64) or 1
        self.errors = ErrorCollector(
            settings.error_strategy, counters, lambda m: say("WARNING", m),
            settings.error_queue_max_size,
        )
        self.run_ready = trio.Event()
        self.creation_done = trio.Event()
        self.creation_error: BaseException | None = None
        self.resumed = False
        self._close_requested = trio.Event()
        self.closing = threading.Event()  # visible from any thread once close has begun
        self._close_strategy = settings.close_strategy
        self._close_timeout = settings.close_timeout
        self._wake_event = trio.Event()
        self._control = _Control()
        self.crashed: BaseException | None = None
        self.finished = trio.Event()
        self.on_creation: Callable[[], None] = lambda: None

    # ------------------------------------------------------------- control

    def request_close(self, strategy: CloseStrategy, timeout: float) -> None:
        """Begin closing (engine thread). Intake stops at once."""
        if not self._close_requested.is_set():
            self._close_strategy = strategy
            self._close_timeout = timeout
            self.inbox.close()
            self._close_requested.set()
            self.closing.set()
            self._wake_event.set()

    def wake(self) -> None:
        self._wake_event.set()

    def _crash(self, error: BaseException) -> None:
        if self.crashed is None:
            self.crashed = error
            self.errors.report(error)
            self.inbox.fail(error)
            self.request_close(CloseStrategy.Immediate, 0)

    # ---------------------------------------------------------------- run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        s = self.settings
        headers = {"User-Agent": "metrana-python"}
        if s.api_key is not None:
            headers["Authorization"] = f"Bearer {s.api_key.get_secret_value()}"
        lanes = s.num_dispatch_workers
        limits = httpx.Limits(max_connections=lanes + 1, max_keepalive_connections=lanes + 1)
        try:
            async with httpx.AsyncClient(
                base_url=s.api_url, headers=headers, transport=self._transport,
                timeout=httpx.Timeout(30.0, connect=10.0), limits=limits,
            ) as client, trio.open_nursery() as root:
                await root.start(self.errors.run)
                await self._run_pipeline(client, lanes, task_status)
                await self.errors.aclose()
        finally:
            self._settle()
            self.finished.set()

    async def _run_pipeline(
        self, client: httpx.AsyncClient, lanes: int, task_status: trio.TaskStatus[None]
    ) -> None:
        dispatch_size = self.settings.dispatch_queue_max_size or float("inf")
        lane_channels = [trio.open_memory_channel[Batch](dispatch_size) for _ in range(lanes)]
        raw_send, raw_receive = trio.open_memory_channel[list[Any]](4)
        step_send, step_receive = trio.open_memory_channel[list[Any]](4)
        step_counter = StepCounter(raw_receive, step_send, self.errors, self.counters, lanes)
        batcher = Batcher(step_receive, [send for send, _ in lane_channels],
                          max_age=self._batch_max_age)
        target = RunTarget(self.session_id, self.settings.workspace_name,
                           self.settings.project_name, self.settings.run_name)
        with trio.CancelScope() as dispatch_scope:
            async with trio.open_nursery() as dispatch:
                dispatch.start_soon(supervised("run creator", self._create_run_actor(client),
                                               self._crash))
                for index, (_, receive) in enumerate(lane_channels):
                    dispatcher = Dispatcher(receive, client, target, self.errors, self.counters,
                                            self._retry, self.run_ready, self._control)
                    await dispatch.start(supervised(f"dispatcher {index}", dispatcher.run,
                                                    self._crash))
                with trio.CancelScope() as intake_scope:
                    async with trio.open_nursery() as intake:
                        await intake.start(supervised("batcher", batcher.run, self._crash))
                        await intake.start(supervised("step counter", step_counter.run, self._crash))
                        await intake.start(supervised("inbox pump", self._pump(raw_send),
                                                      self._crash))
                        task_status.started()
                        await self._close_requested.wait()
                        # Why here and in this order: intake has already stopped (the inbox is
                        # closed), so what remains is to decide how much of the pipeline may
                        # still finish before cancellation takes the rest.
                        strategy = self._close_strategy
                        if strategy is CloseStrategy.Immediate:
                            dispatch_scope.cancel()
                        elif strategy is CloseStrategy.CompletePending:
                            self._control.discard_queued = True
                            intake_scope.cancel()
                            dispatch_scope.deadline = trio.current_time() + self._close_timeout
                        else:
                            dispatch_scope.deadline = trio.current_time() + self._close_timeout

    def _pump(self, send: trio.MemorySendChannel[list[Any]]) -> Callable[..., Any]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with send:
                task_status.started()
                while True:
                    with trio.move_on_after(POLL_INTERVAL):
                        await self._wake_event.wait()
                    self._wake_event = trio.Event()
                    items = self.inbox.drain()
                    if items:
                        await send.send(items)
                    elif not self.inbox.open:
                        return  # closed and empty: end of stream travels downstream

        return run

    def _create_run_actor(self, client: httpx.AsyncClient) -> Callable[..., Any]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                await self._create_run(client)
            except MetranaError as exc:
                self.creation_error = exc
                self.errors.report(exc)
                self._crash_quietly(exc)
            finally:
                self.creation_done.set()
                self.on_creation()

        return run

    def _crash_quietly(self, error: BaseException) -> None:
        self.inbox.fail(error)
        self.request_close(CloseStrategy.Immediate, 0)

    async def _create_run(self, client: httpx.AsyncClient) -> None:
        s = self.settings
        run: dict[str, Any] = {"workspace": s.workspace_name, "project": s.project_name,
                               "runName": s.run_name}
        if s.experiment_name:
            run["experiment"] = s.experiment_name
        body: dict[str, Any] = {"run": run, "createProjectIfMissing": True}
        if s.aggregation_rules:
            body["aggregationRules"] = [rule.to_wire() for rule in s.aggregation_rules]
        response = await post_with_retries(
            client, "/runs", json.dumps(body).encode(), self._retry, self.counters,
            headers={"Content-Type": "application/json"},
        )
        if response.status_code == 409:
            if s.resume_strategy is ResumeStrategy.Never:
                raise MetranaRunAlreadyExistsError(
                    f"run {s.workspace_name}/{s.project_name}/{s.run_name} already exists and "
                    "resume_strategy is Never; choose another run_name or resume_strategy='Allow'"
                )
            self.resumed = True
        elif not 200 <= response.status_code < 300:
            raise MetranaApiError(
                f"creating run {s.workspace_name}/{s.project_name}/{s.run_name} failed with HTTP "
                f"{response.status_code}: {response.text[:500]}",
                status=response.status_code, body=response.text[:2000],
            )
        if self._attributes:
            attributes = self._attributes
            for start in range(0, len(attributes), 1000):
                chunk = attributes[start:start + 1000]
                body_bytes = encode_update(self.session_id, s.workspace_name, s.project_name,
                                           s.run_name, (), chunk)
                response = await post_with_retries(
                    client, "/runs:update", body_bytes, self._retry, self.counters,
                    headers={"Content-Type": "application/json"},
                )
                if not 200 <= response.status_code < 300:
                    raise MetranaApiError(
                        f"sending the run config failed with HTTP {response.status_code}: "
                        f"{response.text[:500]}", status=response.status_code,
                    )
        self.run_ready.set()
        self._say("DEBUG", f"run {s.workspace_name}/{s.project_name}/{s.run_name} "
                           f"{'resumed' if self.resumed else 'created'} at {s.ingestion_url}")

    def _settle(self) -> None:
        """Everything accepted that did not reach an end is discarded: count it."""
        c = self.counters
        self.inbox.drain()  # whatever is left was counted in c.accepted when it was put
        settled = c.sent + c.rejected + c.failed + c.invalid + c.discarded
        if c.accepted > settled:
            c.discarded += c.accepted - settled

    @property
    def close_strategy(self) -> CloseStrategy:
        return self._close_strategy

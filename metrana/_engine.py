"""The engine: one trio task tree that owns every actor of one logger.

It runs either on a background thread (``init()``, ``session()``) or inside the caller's own
nursery (``open_session()``). Closing is a cancellation policy over nested scopes:

- intake (pump, StepCounter, Batcher) — cancelled at once by CompletePending;
- dispatch (the Dispatchers, the run creator, Recovery) — given ``close_timeout`` to finish;
  with a spool, CompleteAll then writes what is left to disk instead of dropping it;
- the ErrorCollector — closed last, so nothing reported during shutdown is lost.

With a spool, a batch that exhausts its retries starts an *outage*: it and every later batch go
to disk, and the Recovery actor replays the spool, oldest first, as soon as the service
answers; only when the spool is empty do batches go straight to the network again. That keeps
each series in order through any outage.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ._actors.batcher import Batcher
from ._actors.dispatcher import Dispatcher, RetryPolicy, RunTarget, post_with_retries, url_of
from ._actors.error_collector import ErrorCollector
from ._actors.flush import FlushMarker
from ._actors.parcel import Parcel, run_points
from ._actors.recovery import probe, replay_directory
from ._actors.step_counter import StepCounter
from ._actors.supervisor import supervised
from ._config import Settings, is_local_url
from ._enums import CloseStrategy, ResumeStrategy
from ._exceptions import (
    MetranaApiError,
    MetranaConnectionError,
    MetranaError,
    MetranaRunAlreadyExistsError,
    MetranaSpoolError,
)
from ._inbox import Inbox
from ._series import SeriesKey
from ._spool import SpoolWriter, encode_record, is_locked, segments, write_manifest
from ._stats import Counters
from ._wire import JSON_HEADERS, encode_update, is_ok

__all__ = ["Engine"]

POLL_INTERVAL = 0.05  # how often the pump looks at the inbox when nobody wakes it
CHUNK = 10_000  # items the pump moves at a time: memory behind the inbox stays small
BATCH_MAX_AGE = 0.2
SPOOL_GRACE = 10.0  # after a close timeout: time allowed to write what is left to disk
RECOVERY_MAX_DELAY = 5.0  # during an outage the service is asked again at least this often
PROBE_TIMEOUT = 2.0  # at close, during an outage: how long to ask whether the service is back
CATCH_UP_GRACE = 5.0  # at most this long do new batches wait for the spool's last records
# Statuses of POST /v1/runs that mean "this URL is not a Metrana ingestion service".
_NOT_METRANA = (404, 405, 501)


class Engine:
    def __init__(
        self,
        settings: Settings,
        inbox: Inbox,
        counters: Counters,
        series: list[SeriesKey],
        *,
        say: Callable[[str, str], None],
        attributes: list[dict[str, Any]] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        batch_max_age: float = BATCH_MAX_AGE,
        compress: bool | None = None,
    ) -> None:
        self.settings = settings
        self.inbox = inbox
        self.counters = counters
        self.series = series
        self._say = say
        self._attributes = attributes or []
        self._transport = transport
        self._retry = retry or RetryPolicy()
        # During an outage the service is asked again at least this often, so a backlog starts
        # moving within seconds of its return rather than after a long backoff.
        self._recovery_retry = attrs.evolve(
            self._retry, max_delay=min(self._retry.max_delay, RECOVERY_MAX_DELAY))
        self._batch_max_age = batch_max_age
        # gzip pays on a real network and costs CPU for nothing on loopback.
        self._compress = not is_local_url(settings.ingestion_url) if compress is None else compress
        self.session_id = random.getrandbits(64) or 1
        self.target = RunTarget(self.session_id, settings.workspace_name, settings.project_name,
                                settings.run_name)
        self.errors = ErrorCollector(
            settings.error_strategy, counters, lambda m: say("WARNING", m),
            settings.error_queue_max_size,
        )
        spool_dir = settings.run_spool_dir()
        self.spool_dir: Path | None = spool_dir
        self.spool = SpoolWriter(spool_dir, settings.spool_max_bytes) if spool_dir else None
        self._manifest_written = False
        self.offline = settings.offline
        self.outage = False
        self.forced = False  # close ran out of time: everything left goes to disk
        self.discard_queued = False
        self.run_ready = trio.Event()
        self._sendable = trio.Event()  # dispatchers may go on: the run exists, or all is spooled
        self._catching_up = False  # Recovery is replaying the last records: new batches wait
        self._recovery_wake = trio.Event()
        self.creation_done = trio.Event()  # init() may stop waiting
        self.creation_error: BaseException | None = None
        self.unreachable: str | None = None  # why the service could not be reached, if so
        self.resumed = False
        self._close_requested = trio.Event()
        self.closing = threading.Event()  # visible from any thread once close has begun
        self._close_strategy = settings.close_strategy
        self._close_timeout = settings.close_timeout
        self._wake_event = trio.Event()
        self._dispatchers: list[Dispatcher] = []
        self._dispatchers_left = 0
        self._recovery_scope = trio.CancelScope()
        self._creator_scope = trio.CancelScope()
        self._dispatch_scope: trio.CancelScope | None = None
        self.crashed: BaseException | None = None
        self.finished = trio.Event()
        self.on_creation: Callable[[], None] = lambda: None

    # ------------------------------------------------------------- control

    @property
    def spool_only(self) -> bool:
        return self.offline or self.outage or self.forced

    def can_spool(self) -> bool:
        return self.spool is not None

    def request_close(self, strategy: CloseStrategy, timeout: float) -> None:
        """Begin closing (engine thread). Intake stops at once."""
        if not self._close_requested.is_set():
            self._close_strategy = strategy
            self._close_timeout = timeout
            self.inbox.close()
            self._close_requested.set()
            self.closing.set()
            self._wake_event.set()

    def spool_now(self) -> None:
        """Stop waiting for the service: write everything still undelivered to the spool."""
        if self.spool is None:
            self.request_close(CloseStrategy.Immediate, 0)
            return
        self.request_close(CloseStrategy.CompleteAll, 0)
        self.force_spool()

    def force_spool(self) -> None:
        self.forced = True
        self._creator_scope.cancel()  # nothing more will be sent; stop waiting on the service
        if self._dispatch_scope is not None:
            grace = trio.current_time() + SPOOL_GRACE
            self._dispatch_scope.deadline = min(self._dispatch_scope.deadline, grace)
        self._sendable.set()
        self._recovery_scope.cancel()
        for dispatcher in self._dispatchers:
            if dispatcher.request_scope is not None:
                dispatcher.request_scope.cancel()

    def wake(self) -> None:
        self._wake_event.set()

    async def wait_sendable(self) -> None:
        if not self._catching_up:
            await self._sendable.wait()
            return
        with trio.move_on_after(CATCH_UP_GRACE):
            await self._sendable.wait()
            return
        # Recovery needs longer than a moment (the service went away again?): stop holding
        # batches in memory, spool them as before.
        self._catching_up = False
        self._sendable.set()

    def enter_outage(self, reason: str, *, announce: bool = True) -> None:
        """From now on every batch goes to the spool until Recovery has replayed it all."""
        if not self.outage and self.spool is not None:
            self.outage = True
            self._sendable.set()
            self._recovery_wake.set()
            if announce:
                self._say("WARNING", f"the service is unreachable ({reason}); points are "
                                     f"spooled to {self.spool_dir} and sent when it answers")

    def spool_parcels(self, parcels: list[Parcel], count: int) -> None:
        """Write points durably to the spool (one record), or count them as failed and say why."""
        series = [(state.key, state.manual, run_points(runs))
                  for parcel in parcels for state, runs in parcel]
        if self.spool is None:
            self.counters.failed += count
            return
        try:
            if not self._manifest_written:
                self._write_manifest()
            self.spool.append(encode_record(self.session_id, series))
        except OSError as exc:
            self.counters.failed += count
            self.errors.report(MetranaSpoolError(
                f"{count:,} points could be neither delivered nor spooled: {exc}"))
            return
        self.counters.spooled += count

    def _write_manifest(self) -> None:
        s = self.settings
        assert self.spool_dir is not None
        write_manifest(self.spool_dir, {
            "workspace": s.workspace_name, "project": s.project_name, "run_name": s.run_name,
            "experiment": s.experiment_name, "ingestion_url": s.ingestion_url,
            "aggregation_rules": [rule.to_wire() for rule in s.aggregation_rules],
            "attributes": self._attributes,
        })
        self._manifest_written = True

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
                await self._run_pipeline(client, lanes, root, task_status)
                await self._announce_finished(client)
                await self.errors.aclose()
        finally:
            if self.spool is not None:
                self.spool.close()
            self._settle()
            self.inbox.release_markers()
            self.finished.set()

    async def _run_pipeline(
        self, client: httpx.AsyncClient, lanes: int, root: trio.Nursery,
        task_status: trio.TaskStatus[None],
    ) -> None:
        # A bounded event queue bounds memory only if the lanes behind it are bounded too.
        s = self.settings
        dispatch_size = s.dispatch_queue_max_size or (2 if s.event_queue_max_size else float("inf"))
        lane_channels = [trio.open_memory_channel[Any](dispatch_size) for _ in range(lanes)]
        raw_send, raw_receive = trio.open_memory_channel[Any](1)
        step_send, step_receive = trio.open_memory_channel[Any](1)
        step_counter = StepCounter(raw_receive, step_send, self.errors, self.counters, lanes,
                                   self.series)
        batcher = Batcher(step_receive, [send for send, _ in lane_channels],
                          max_age=self._batch_max_age)
        self._start_offline_or_resume()
        # Close-time helpers (the spool deadline, the reachability probe) live in the root
        # nursery; each registers its cancel scope here so the engine's end stops them.
        self._helpers: list[trio.CancelScope] = []
        with trio.CancelScope() as dispatch_scope:
            self._dispatch_scope = dispatch_scope
            async with trio.open_nursery() as dispatch:
                if not self.offline:
                    dispatch.start_soon(supervised("run creator", self._creator(client),
                                                   self._crash))
                    if self.spool is not None:
                        dispatch.start_soon(supervised("recovery", self._recovery(client),
                                                       self._crash))
                self._dispatchers_left = lanes
                for index, (_, receive) in enumerate(lane_channels):
                    dispatcher = Dispatcher(receive, client, self.target, self.errors,
                                            self.counters, self._retry, self,
                                            compress=self._compress)
                    self._dispatchers.append(dispatcher)
                    await dispatch.start(supervised(f"dispatcher {index}",
                                                    self._counted(dispatcher.run), self._crash))
                with trio.CancelScope() as intake_scope:
                    async with trio.open_nursery() as intake:
                        await intake.start(supervised("batcher", batcher.run, self._crash))
                        await intake.start(supervised("step counter", step_counter.run,
                                                      self._crash))
                        await intake.start(supervised("inbox pump", self._pump(raw_send),
                                                      self._crash))
                        task_status.started()
                        await self._close_requested.wait()
                        # Intake has already stopped (the inbox is closed); what remains is how
                        # much of the pipeline may still finish before cancellation takes it.
                        strategy = self._close_strategy
                        deadline = trio.current_time() + self._close_timeout
                        if self.offline:
                            # The disk is the destination: everything accepted is written to
                            # it, whatever the strategy; there is no network to wait for.
                            pass
                        elif strategy is CloseStrategy.Immediate:
                            dispatch_scope.cancel()
                        elif strategy is CloseStrategy.CompletePending:
                            self.discard_queued = True
                            intake_scope.cancel()
                            dispatch_scope.deadline = deadline
                        elif self.spool is None:
                            dispatch_scope.deadline = deadline
                        else:
                            root.start_soon(self._spool_at, deadline)
                            if self.outage or not self.run_ready.is_set():
                                root.start_soon(self._spool_if_unreachable, client)
        for helper in self._helpers:
            helper.cancel()

    async def _announce_finished(self, client: httpx.AsyncClient) -> None:
        """Tell the service this session is done (``closeRun``), so a dashboard can show the
        run as finished. Best effort, bounded: it carries no points."""
        if (not self.run_ready.is_set() or self.offline or self.outage or self.forced
                or self.crashed is not None or self._close_strategy is CloseStrategy.Immediate):
            return
        s = self.settings
        body = encode_update(self.session_id, s.workspace_name, s.project_name, s.run_name, (),
                             close_run=True)
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                await post_with_retries(client, "/runs:update", body,
                                        attrs.evolve(self._retry, max_attempts=1), self.counters)
            except MetranaConnectionError:
                pass

    def _helper_scope(self) -> trio.CancelScope:
        scope = trio.CancelScope()
        self._helpers.append(scope)
        return scope

    async def _spool_if_unreachable(self, client: httpx.AsyncClient) -> None:
        """Closing while the service is away: if it still does not answer, do not make the
        user wait out the close timeout — spool what is left now."""
        with self._helper_scope():
            reachable = False
            with trio.move_on_after(PROBE_TIMEOUT):
                reachable = await probe(client, self.target, self._retry)
            if not reachable and not self.finished.is_set():
                self._say("WARNING", f"{self.settings.ingestion_url} still does not answer; "
                                     f"writing undelivered points to the spool at "
                                     f"{self.spool_dir}")
                self.force_spool()

    async def _spool_at(self, deadline: float) -> None:
        """CompleteAll with a spool: at the deadline, put what is left on disk, not in the bin."""
        with self._helper_scope():
            await trio.sleep_until(deadline)
            if not self.finished.is_set():
                self._say("WARNING", f"close timed out after {self._close_timeout:g}s; writing "
                                     f"undelivered points to the spool at {self.spool_dir}")
                self.force_spool()

    def _counted(self, run: Callable[..., Any]) -> Callable[..., Any]:
        async def counted(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await run(task_status=task_status)
            finally:
                self._dispatchers_left -= 1
                if self._dispatchers_left == 0:
                    self._recovery_wake.set()  # recovery may finish once the spool is empty

        return counted

    def _start_offline_or_resume(self) -> None:
        if self.offline:
            self._write_manifest()
            self.run_ready.set()
            self._sendable.set()
            self._release_init()
            return
        if self.spool_dir is not None and any(not is_locked(p) for p in segments(self.spool_dir)):
            # An earlier session left points on disk: they go first, ours queue behind them.
            self._say("INFO", f"found spooled points from an earlier session in "
                              f"{self.spool_dir}; delivering them first")
            self.enter_outage("an earlier session's spool is waiting", announce=False)

    def _pump(self, send: trio.MemorySendChannel[Any]) -> Callable[..., Any]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with send:
                task_status.started()
                while True:
                    if len(self.inbox) < CHUNK:  # with a backlog, go straight on
                        with trio.move_on_after(POLL_INTERVAL):
                            await self._wake_event.wait()
                        self._wake_event = trio.Event()
                    items, markers = self.inbox.drain_with_markers(CHUNK)
                    if markers:
                        await self._send_split(send, items)
                    elif items:
                        await send.send(items)
                    elif not self.inbox.open:
                        return  # closed and empty: end of stream travels downstream

        return run

    @staticmethod
    async def _send_split(send: trio.MemorySendChannel[Any], items: list[Any]) -> None:
        chunk: list[Any] = []
        for item in items:
            if type(item) is FlushMarker:
                if chunk:
                    await send.send(chunk)
                    chunk = []
                await send.send(item)
            else:
                chunk.append(item)
        if chunk:
            await send.send(chunk)

    def _creator(self, client: httpx.AsyncClient) -> Callable[..., Any]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            try:
                with self._creator_scope:
                    await self._create_run(client, persistent=False)
            except MetranaConnectionError as exc:
                if self.spool is None:
                    self._fail_creation(exc)
                else:
                    # Unreachable for the whole retry budget: spool until it answers; Recovery
                    # creates the run before replaying.
                    self.enter_outage(self.unreachable or str(exc))
            except MetranaError as exc:
                self._fail_creation(exc)
            finally:
                self._release_init()

        return run

    def _release_init(self) -> None:
        """init() stops waiting: the run exists, was refused, or cannot be reached for now."""
        if not self.creation_done.is_set():
            self.creation_done.set()
            self.on_creation()

    def _heard_failure(self, attempt: int, reason: str, unreachable: bool) -> None:
        """The first failed attempt to create the run: say at once what is wrong."""
        if self.unreachable is not None or self.run_ready.is_set():
            return
        url = self.settings.ingestion_url
        if unreachable:
            self.unreachable = reason
            hint = (" — is `metrana serve` running? (start it with `metrana serve`)"
                    if is_local_url(url) else "")
            kept = (f"points are kept and spooled to {self.spool_dir}" if self.spool is not None
                    else "points are kept in memory")
            self._say("WARNING", f"cannot reach {url} ({reason}){hint}; {kept} and sent "
                                 "when it answers")
            self._release_init()  # no point making init() wait for a service that is not there

    def _fail_creation(self, error: BaseException) -> None:
        self.creation_error = error
        self.errors.report(error)
        self.inbox.fail(error)
        self.request_close(CloseStrategy.Immediate, 0)

    async def _post(self, client: httpx.AsyncClient, path: str, body: bytes,
                    persistent: bool) -> httpx.Response:
        policy = self._recovery_retry if persistent else self._retry
        while True:
            try:
                return await post_with_retries(client, path, body, policy, self.counters,
                                               headers=JSON_HEADERS,
                                               on_failure=self._heard_failure)
            except MetranaConnectionError:
                if not persistent:
                    raise
                # however long the service is away: the backoff inside paces the probing

    async def _create_run(self, client: httpx.AsyncClient, *, persistent: bool) -> None:
        if self.run_ready.is_set():
            return
        s = self.settings
        run: dict[str, Any] = {"workspace": s.workspace_name, "project": s.project_name,
                               "runName": s.run_name}
        if s.experiment_name:
            run["experiment"] = s.experiment_name
        body: dict[str, Any] = {"run": run, "createProjectIfMissing": True}
        if s.aggregation_rules:
            body["aggregationRules"] = [rule.to_wire() for rule in s.aggregation_rules]
        name = f"{s.workspace_name}/{s.project_name}/{s.run_name}"
        response = await self._post(client, "/runs", json.dumps(body).encode(), persistent)
        if response.status_code == 409:
            if s.resume_strategy is ResumeStrategy.Never:
                raise MetranaRunAlreadyExistsError(
                    f"run {name} already exists and resume_strategy is Never; choose another "
                    "run_name or resume_strategy='Allow'"
                )
            self.resumed = True
        elif response.status_code in _NOT_METRANA:
            raise MetranaApiError(
                f"{url_of(client, '/runs')} answered HTTP {response.status_code}: this URL does "
                f"not look like a Metrana ingestion service. Check ingestion_url (the local "
                f"server is `metrana serve`, at http://127.0.0.1:8787 by default; give the "
                f"server's base URL, without /v1)",
                status=response.status_code, body=response.text[:2000],
            )
        elif not is_ok(response.status_code):
            raise MetranaApiError(
                f"creating run {name} failed with HTTP {response.status_code}: "
                f"{response.text[:500]}",
                status=response.status_code, body=response.text[:2000],
            )
        for start in range(0, len(self._attributes), 1000):
            chunk = self._attributes[start:start + 1000]
            body_bytes = encode_update(self.session_id, s.workspace_name, s.project_name,
                                       s.run_name, (), chunk)
            response = await self._post(client, "/runs:update", body_bytes, persistent)
            if not is_ok(response.status_code):
                raise MetranaApiError(
                    f"sending the run config failed with HTTP {response.status_code}: "
                    f"{response.text[:500]}", status=response.status_code,
                )
        self.unreachable = None
        self.run_ready.set()
        self._sendable.set()
        if self.resumed:
            self._say("SUCCESS", f"resuming run {name}, which already exists at "
                                 f"{s.ingestion_url}: new points of its series are stored after "
                                 "the ones it has (resume_strategy='Never' refuses instead)")
        else:
            self._say("DEBUG", f"run {name} created at {s.ingestion_url}")

    def _recovery(self, client: httpx.AsyncClient) -> Callable[..., Any]:
        async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            with self._recovery_scope:
                while True:
                    await self._recovery_wake.wait()
                    self._recovery_wake = trio.Event()
                    if self.outage:
                        await self._replay_until_empty(client)
                    if self._dispatchers_left == 0 and not self.outage:
                        return

        return run

    async def _replay_until_empty(self, client: httpx.AsyncClient) -> None:
        assert self.spool is not None and self.spool_dir is not None
        try:
            await self._create_run(client, persistent=True)
        except MetranaError as exc:
            self._fail_creation(exc)
            return
        replayed = 0
        while True:
            result = await replay_directory(
                client, self.spool_dir, self.target, self._recovery_retry, self.counters,
                self.errors.report, own_session=self.session_id, persistent=True,
                lanes=self.settings.num_dispatch_workers,
            )
            replayed += result.delivered
            # No await between this check and the switch: a batch spooled meanwhile would
            # otherwise be overtaken by the next one sent straight to the network.
            if self.spool.active_records == 0 and not [
                p for p in segments(self.spool_dir) if not is_locked(p)
            ]:
                self.outage = False
                self._catching_up = False
                self._sendable.set()
                self._say("INFO", f"the service answers again; {replayed:,} spooled points "
                                  "delivered, sending directly again")
                return
            if result.delivered and not self._catching_up and not self.forced:
                # While logging goes on, batches keep arriving during every replay, so the spool
                # would never be empty at the moment of the check: hold new batches in memory
                # (for CATCH_UP_GRACE at most) while the records spooled meanwhile are replayed.
                self._catching_up = True
                self._sendable = trio.Event()
            self.spool.rotate()

    def _settle(self) -> None:
        """Everything accepted that did not reach an end is discarded: count it."""
        self.inbox.drain()  # whatever is left was counted in counters.accepted when put
        c = self.counters
        unsettled = c.total_accepted() - c.settled()
        if unsettled > 0:
            c.discarded += unsettled

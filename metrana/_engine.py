"""The engine: the supervisor of one logger's actors. It starts them, watches them, and stops
them by the close strategy; it does none of their work.

It runs either on a background thread (``init()``, ``session()``) or inside the caller's own
nursery (``open_session()``). The actors (see :mod:`metrana._actors`) are wired by channels;
where batches go is the :class:`~metrana._delivery.Delivery` they share. Closing is a
cancellation policy over nested scopes:

- intake (pump, StepCounter, Batcher) — cancelled at once by CompletePending;
- dispatch (the Dispatchers, the run creator, Recovery) — given ``close_timeout`` to finish;
  with a spool, CompleteAll then writes what is left to disk instead of dropping it;
- the ErrorCollector — closed last, so nothing reported during shutdown is lost.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ._actors.batcher import Batcher, ToLane
from ._actors.dispatcher import Dispatcher
from ._actors.error_collector import ErrorCollector
from ._actors.pump import Intake, Pump
from ._actors.recovery import Recovery
from ._actors.replay import Answer, ask
from ._actors.run_creator import RunCreator, RunSpec
from ._actors.run_updates import HEARTBEAT_S, RunUpdates
from ._actors.step_counter import Numbered, StepCounter, StoredEnds
from ._actors.supervisor import supervised
from ._actors.system_sampler import SystemSampler
from ._config import Settings, is_local_url
from ._delivery import Delivery, DeliveryMode
from ._enums import CloseStrategy, ResumeStrategy
from ._exceptions import MetranaConnectionError
from ._inbox import Inbox
from ._orchestration import writer_attributes
from ._run_spool import RunSpool
from ._series import SeriesKey
from ._stats import Counters
from ._transport import RetryPolicy, RunTarget, make_client, send_close

__all__ = ["Engine"]

BATCH_MAX_AGE = 0.2
SPOOL_GRACE = 10.0  # after a close timeout: time allowed to write what is left to disk
RECOVERY_MAX_DELAY = 5.0  # during an outage the service is asked again at least this often
PROBE_TIMEOUT = 2.0  # at close, during an outage: how long to ask whether the service is back
CLOSE_PROBE_EVERY = 1.0  # at close, during an outage: how often to ask whether it refuses


@attrs.frozen
class EngineOptions:
    """Test and benchmark hooks, and ``compress``."""

    transport: httpx.AsyncBaseTransport | None = None
    retry: RetryPolicy | None = None
    batch_max_age: float = BATCH_MAX_AGE
    compress: bool | None = None  # gzip bodies; None: only for a non-loopback service
    heartbeat_interval: float = HEARTBEAT_S  # an idle run's empty update, this often


class Engine:
    def __init__(self, settings: Settings, inbox: Inbox, counters: Counters,
                 series: list[SeriesKey], *, say: Callable[[str, str], None],
                 attributes: list[dict[str, Any]], options: EngineOptions,
                 emit_system: Callable[[list[tuple[str, float]], int], None] | None = None,
                 check_reruns: bool = True) -> None:
        self.settings = settings
        self.inbox = inbox
        self.counters = counters
        self.series = series
        self._say = say
        self._options = options
        self._retry = options.retry or RetryPolicy()
        # During an outage the service is asked again at least this often, so a backlog starts
        # moving within seconds of its return rather than after a long backoff.
        self._recovery_retry = attrs.evolve(
            self._retry, max_delay=min(self._retry.max_delay, RECOVERY_MAX_DELAY))
        self.session_id = random.getrandbits(64) or 1
        self.target = RunTarget(self.session_id, settings.workspace_name, settings.project_name,
                                settings.run_name)
        if settings.orchestration_id is not None:  # one of a job's processes: say who
            attributes = [*attributes, *writer_attributes(settings.logger_id, self.session_id)]
        self.spec = RunSpec(settings.workspace_name, settings.project_name, settings.run_name,
                            settings.experiment_name,
                            tuple(rule.to_wire() for rule in settings.aggregation_rules),
                            tuple(attributes), settings.orchestration_id)
        self.errors = ErrorCollector(settings.error_strategy, counters,
                                     lambda m: say("WARNING", m), settings.error_queue_max_size)
        self.spool_dir: Path | None = settings.run_spool_dir()
        self.spool = RunSpool(self.spool_dir, settings.spool_max_bytes,
                              self.spec.manifest(settings.ingestion_url), self.session_id,
                              counters, self.errors.report)
        self.delivery = Delivery(offline=settings.offline, spool_dir=self.spool_dir, say=say)
        # Where a resumed run's series end (see _actors.series_ends); not asked offline, nor by
        # a forked child, which logs alongside its parent rather than rerunning it.
        self.ends = StoredEnds()
        self._check_reruns = check_reruns and not settings.offline
        if not self._check_reruns:
            self.ends.ready.set()
        self._raw_send, self._raw_receive = trio.open_memory_channel[Intake](1)
        self.pump = Pump(inbox, self._raw_send)
        self.creator: RunCreator | None = None
        self.creation_done = trio.Event()  # init() may stop waiting
        self.on_creation: Callable[[], None] = lambda: None
        self.creation_error: BaseException | None = None
        # init() still waits for the run: a fatal error is raised there, so it is not printed
        # too (the session clears this once it stops waiting; then the engine says it).
        self.init_waits = True
        self.joins_parent = False  # a forked worker's engine, logging to its parent's run
        self._close_requested = trio.Event()
        self._close_strategy = settings.close_strategy
        self._close_timeout = settings.close_timeout
        self._dispatchers: list[Dispatcher] = []
        self._recovery: Recovery | None = None
        self._dispatch_scope: trio.CancelScope | None = None
        self._helpers: list[trio.CancelScope] = []
        self.crashed: BaseException | None = None
        self.terminated = False  # SIGTERM: spooled for another process to deliver
        self.finished = trio.Event()
        # Built here, in the caller's thread (see make_client).
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        self._client = make_client(settings.api_url, key,
                                   connections=settings.num_dispatch_workers + 1,
                                   transport=options.transport)
        self.run_updates = RunUpdates(self._client, self.target, self.delivery,
                                      policy=self._retry, counters=counters, say=say,
                                      report=self.errors.report,
                                      interval=options.heartbeat_interval)
        interval = settings.system_metrics_interval
        self.sampler = (SystemSampler(interval, emit_system, say)
                        if emit_system is not None and interval > 0 else None)

    @property
    def resumed(self) -> bool:
        return self.creator is not None and self.creator.resumed

    # ----------------------------------------------------- control (engine thread)

    def wake(self) -> None:
        self.pump.wake()
        self.run_updates.wake()

    def change_attributes(self, attributes: list[dict[str, Any]]) -> None:
        """From any thread: tags or notes changed while the run is open (sent by RunUpdates;
        the caller then wakes the engine)."""
        if self.settings.offline:
            self._say("WARNING", "tags and notes changed after init() are not recorded in "
                                 "offline mode (only those given to init() are)")
            return
        self.run_updates.pending.append(attributes)

    def request_close(self, strategy: CloseStrategy, timeout: float) -> None:
        """Begin closing. Intake stops at once."""
        if not self._close_requested.is_set():
            self._close_strategy = strategy
            self._close_timeout = timeout
            self.inbox.close()
            self._close_requested.set()
            self.pump.wake()
            self.run_updates.finish()
            if self.sampler is not None:
                self.sampler.scope.cancel()

    def spool_now(self) -> None:
        """Stop waiting for the service: write everything still undelivered to the spool."""
        if not self.spool.enabled:
            self.request_close(CloseStrategy.Immediate, 0)
            return
        self.request_close(CloseStrategy.CompleteAll, 0)
        self.force_spool()

    def spool_for_exit(self, timeout: float) -> None:
        """The process is being terminated (SIGTERM): everything undelivered to the spool at
        once, or, with the spool off, delivered within ``timeout``. The run is not closed on
        the service: the process did not close it (its parent, or a later session, does)."""
        self.terminated = True
        if self.spool.enabled:
            self.spool_now()
        else:
            self.request_close(CloseStrategy.CompleteAll, timeout)

    def force_spool(self) -> None:
        self.delivery.force()
        if self.creator is not None:
            self.creator.scope.cancel()  # nothing more will be sent; stop waiting on the service
        if self._recovery is not None:
            self._recovery.scope.cancel()
        if self._dispatch_scope is not None:
            grace = trio.current_time() + SPOOL_GRACE
            self._dispatch_scope.deadline = min(self._dispatch_scope.deadline, grace)
        for dispatcher in self._dispatchers:
            if dispatcher.request_scope is not None:
                dispatcher.request_scope.cancel()

    def _fatal(self, error: BaseException) -> None:
        """The run cannot be logged to (refused, e.g. HTTP 401): stop, and say why."""
        if self.creation_error is None:
            self.creation_error = error
        if self.init_waits and error is self.creation_error:
            self.counters.errors += 1  # counted as reported; init() raises it, said once
        else:
            self.errors.report(error)
        self.inbox.fail(error)
        self.request_close(CloseStrategy.Immediate, 0)
        self._release_init()

    def _crash(self, error: BaseException) -> None:
        """An actor failed (a bug): report it, stop taking points, never hang the caller."""
        if self.crashed is None:
            self.crashed = error
            self.errors.report(error)
            self.inbox.fail(error)
            self.request_close(CloseStrategy.Immediate, 0)

    def _release_init(self) -> None:
        if not self.creation_done.is_set():
            self.creation_done.set()
            self.on_creation()

    # ------------------------------------------------------------------ the run

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        lanes = self.settings.num_dispatch_workers
        try:
            async with self._client as client, trio.open_nursery() as root:
                await root.start(self.errors.run)
                await self._run_pipeline(client, lanes, root, task_status)
                await self._announce_finished(client)
                await self.errors.aclose()
        finally:
            self.spool.close()
            self._settle()
            self.inbox.release_markers()
            self._release_init()
            self.finished.set()

    def _start(self, client: httpx.AsyncClient, lanes: int) -> None:
        """Build the run creator and Recovery; say how the run begins."""
        s = self.settings
        if self.delivery.mode is DeliveryMode.OFFLINE:
            self.spool.write_manifest()
            self._release_init()
            return
        self.creator = RunCreator(
            client, self.spec, self.session_id, policy=self._retry,
            recovery_policy=self._recovery_retry, counters=self.counters,
            delivery=self.delivery, refuse_existing=s.resume_strategy is ResumeStrategy.Never,
            say=self._say, on_fatal=self._fatal,
            ends=self.ends if self._check_reruns else None)
        self.creator.on_done = self._release_init
        self.creator.joins_parent = self.joins_parent
        if self.spool.enabled:
            self._recovery = Recovery(
                client, delivery=self.delivery, spool=self.spool, creator=self.creator,
                target=self.target, policy=self._recovery_retry, counters=self.counters,
                lanes=lanes, report=self.errors.report, say=self._say, on_fatal=self._fatal)
            self.spool.reopen()
            if self.spool.waiting():
                # An earlier session left points on disk: they go first, ours queue behind.
                self._say("INFO", f"found spooled points from an earlier session in "
                                  f"{self.spool_dir}; delivering them first")
                self.delivery.enter_outage("an earlier session's spool is waiting",
                                           announce=False)

    async def _run_pipeline(self, client: httpx.AsyncClient, lanes: int, root: trio.Nursery,
                            task_status: trio.TaskStatus[None]) -> None:
        s = self.settings
        # A bounded event queue bounds memory only if the lanes behind it are bounded too.
        dispatch_size = s.dispatch_queue_max_size or (2 if s.event_queue_max_size else float("inf"))
        lane_channels = [trio.open_memory_channel[ToLane](dispatch_size) for _ in range(lanes)]
        step_send, step_receive = trio.open_memory_channel[Numbered](1)
        step_counter = StepCounter(self._raw_receive, step_send, self.errors, self.counters,
                                   self.series, self.ends)
        batcher = Batcher(step_receive, [send for send, _ in lane_channels],
                          max_age=self._options.batch_max_age)
        # gzip pays on a real network and costs CPU for nothing on loopback.
        compress = self._options.compress
        if compress is None:
            compress = not is_local_url(s.ingestion_url)
        self._start(client, lanes)
        with trio.CancelScope() as dispatch_scope:
            self._dispatch_scope = dispatch_scope
            async with trio.open_nursery() as dispatch:
                if self.creator is not None:
                    self.creator.side = dispatch
                    dispatch.start_soon(supervised("run creator", self.creator.run, self._crash))
                if self._recovery is not None:
                    dispatch.start_soon(supervised("recovery", self._recovery.run, self._crash))
                if self.creator is not None:  # not offline: there is a service to tell
                    dispatch.start_soon(supervised("run updates", self.run_updates.run,
                                                   self._crash))
                left = [lanes]
                for index, (_, receive) in enumerate(lane_channels):
                    dispatcher = Dispatcher(receive, client, self.target, self.errors,
                                            self.counters, self._retry, self.delivery,
                                            self.spool, compress=compress)
                    self._dispatchers.append(dispatcher)
                    await dispatch.start(supervised(f"dispatcher {index}",
                                                    self._counted(dispatcher.run, left),
                                                    self._crash))
                with trio.CancelScope() as intake_scope:
                    async with trio.open_nursery() as intake:
                        await intake.start(supervised("batcher", batcher.run, self._crash))
                        await intake.start(supervised("step counter", step_counter.run,
                                                      self._crash))
                        await intake.start(supervised("inbox pump", self.pump.run, self._crash))
                        if self.sampler is not None:
                            intake.start_soon(supervised("system metrics", self.sampler.run,
                                                         self._crash))
                        task_status.started()
                        await self._close_requested.wait()
                        self._apply_close(client, root, intake_scope, dispatch_scope)
        for helper in self._helpers:
            helper.cancel()

    def _apply_close(self, client: httpx.AsyncClient, root: trio.Nursery,
                     intake_scope: trio.CancelScope, dispatch_scope: trio.CancelScope) -> None:
        """Intake has already stopped (the inbox is closed); what remains is how much of the
        pipeline may still finish before cancellation takes it."""
        strategy = self._close_strategy
        deadline = trio.current_time() + self._close_timeout
        if self.delivery.mode is DeliveryMode.OFFLINE:
            # The disk is the destination: everything accepted is written to it, whatever the
            # strategy; there is no network to wait for.
            return
        if strategy is CloseStrategy.Immediate:
            dispatch_scope.cancel()
        elif strategy is CloseStrategy.CompletePending:
            self.delivery.discard_queued = True
            intake_scope.cancel()
            dispatch_scope.deadline = deadline
        elif not self.spool.enabled:
            dispatch_scope.deadline = deadline
        else:
            root.start_soon(self._spool_at, deadline)
            root.start_soon(self._spool_if_refused, client)
            if self.delivery.mode is DeliveryMode.DIRECT and self.spool.waiting():
                # Segments whose writer is gone (a worker ended by SIGTERM, a crashed session
                # of this run): delivered with ours before the run is closed.
                self._say("INFO", f"delivering points other processes left in {self.spool_dir}")
                self.delivery.enter_outage("segments of ended processes wait", announce=False)

    def _helper_scope(self) -> trio.CancelScope:
        """Close-time helpers live in the root nursery; the pipeline's end cancels them."""
        scope = trio.CancelScope()
        self._helpers.append(scope)
        return scope

    async def _spool_at(self, deadline: float) -> None:
        """CompleteAll with a spool: at the deadline, put what is left on disk, not in the bin."""
        with self._helper_scope():
            await trio.sleep_until(deadline)
            if not self.finished.is_set() and self.delivery.mode is not DeliveryMode.FORCED:
                self._say("WARNING", f"close timed out after {self._close_timeout:g}s; writing "
                                     f"undelivered points to the spool at {self.spool_dir}")
                self.force_spool()

    async def _spool_if_refused(self, client: httpx.AsyncClient) -> None:
        """Closing while the service is away: when it definitely is not there (connection
        refused, no route, unknown host), do not make the user wait out the close timeout —
        spool what is left now. A service that is slow or busy (no answer within the probe's
        time, a 5xx) is there: close waits for it until ``close_timeout``, as it would for a
        long drain."""
        delivery = self.delivery
        with self._helper_scope():
            while not self.finished.is_set():
                if delivery.outage or not delivery.run_ready.is_set():
                    answer = Answer.NO_ANSWER
                    with trio.move_on_after(PROBE_TIMEOUT):
                        answer = await ask(client, self.target, self._retry)
                    if answer is Answer.REFUSED and not self.finished.is_set():
                        self._say("WARNING", f"{self.settings.ingestion_url} refuses "
                                             "connections; writing undelivered points to the "
                                             f"spool at {self.spool_dir}")
                        self.force_spool()
                        return
                await trio.sleep(CLOSE_PROBE_EVERY)

    def _counted(self, run: Callable[..., Any], left: list[int]) -> Callable[..., Any]:
        async def counted(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            try:
                await run(task_status=task_status)
            finally:
                left[0] -= 1
                if left[0] == 0 and self._recovery is not None:
                    self._recovery.dispatchers_done()  # it may finish once the spool is empty

        return counted

    @property
    def from_others(self) -> int:
        """Points other sessions (processes) left in the spool that this one delivered."""
        return self._recovery.from_others if self._recovery is not None else 0

    async def _announce_finished(self, client: httpx.AsyncClient) -> None:
        """Tell the service this session is done (``closeRun``), so a dashboard can show the
        run as finished. Best effort, bounded: it carries no points.

        Not while points of the run wait in its spool (ours, or those of a process that
        ended before delivering them): the run is not finished until they are delivered, so
        the close is recorded in the spool instead, and ``metrana sync`` sends it after them.
        """
        delivery = self.delivery
        if (self.crashed is not None or self.terminated
                or self._close_strategy is CloseStrategy.Immediate):
            return
        if (delivery.spool_only or delivery.outage or self.spool.waiting()
                or not delivery.run_ready.is_set()):
            if self.spool.enabled and (delivery.spool_only or delivery.outage
                                       or self.spool.waiting()):
                self.spool.record_close()
                if not delivery.spool_only and not delivery.outage:
                    self._say("WARNING", f"points other processes left in {self.spool_dir} are "
                                         "not delivered; the run is shown finished once `metrana "
                                         f"sync {self.spool_dir}` delivers them")
            return
        # Having delivered what ended processes left in the spool, the close is the run's, not
        # only this session's (session 0): the server then counts their sessions, which the
        # replay made look alive, as closed too (metrana.server.store.liveness).
        closing = attrs.evolve(self.target, session_id=0 if self.from_others else self.session_id)
        with trio.move_on_after(PROBE_TIMEOUT):
            try:
                await send_close(client, closing, attrs.evolve(self._retry, max_attempts=1),
                                 self.counters)
            except MetranaConnectionError:
                pass

    def _settle(self) -> None:
        """Everything accepted that did not reach an end is discarded: count it."""
        self.inbox.drain()  # whatever is left was counted as accepted when it was drained
        c = self.counters
        unsettled = c.total_accepted() - c.settled()
        if unsettled > 0:
            c.discarded += unsettled

"""Session objects: the ``log*`` methods users call, over one engine.

:class:`Session` runs its engine on a background thread (``metrana.init()`` and
``with metrana.session(...)``); :class:`TrioSession` runs it in the caller's trio nursery
(``async with metrana.open_session(...)``). Both share the synchronous, cheap ``log*`` path.
"""

from __future__ import annotations

import enum
import multiprocessing.util as _mp_util
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import httpx
import trio

from ._actors.dispatcher import RetryPolicy
from ._actors.flush import FlushMarker
from ._config import Settings
from ._distributed import process_rank
from ._engine import SPOOL_GRACE, Engine
from ._enums import CloseStrategy, Distributed, ErrorStrategy
from ._exceptions import MetranaError, MetranaFlushTimeoutError, MetranaLoggerClosedError
from ._inbox import Inbox
from ._log import say
from ._series import (
    MAX_STEP,
    PLAUSIBLE_NS,
    SeriesKey,
    check_int,
    check_name,
    check_text,
    check_timestamp,
    coerce_value,
    label_tuple,
    resolve_scale,
)
from ._stats import Counters, Metrics
from ._vector import Block, as_values, is_vector, per_env, rows, steps_for

__all__ = ["DisabledSession", "Session", "TrioSession", "live_sessions"]

DEFAULT_INIT_TIMEOUT = 10.0
_EXIT_GRACE = 5.0
_PROGRESS_EVERY = 2.0  # seconds between progress messages while close() drains


class State(enum.Enum):
    OPEN = "open"  # accepting points
    CLOSING = "closing"  # close() is running; log() raises
    CLOSED = "closed"  # finished; log() raises MetranaLoggerClosedError
    FORKED = "forked"  # this object was inherited by a forked child; restarts on first use


live_sessions: weakref.WeakSet[Session] = weakref.WeakSet()


def _close_at_process_exit(ref: weakref.ref[Session]) -> None:
    session = ref()
    if session is not None:
        session._close_at_exit()
_time_ns = time.time_ns


def close_advice(final: Metrics, settings: Settings, strategy: CloseStrategy | None,
                 timeout: float) -> list[str]:
    """For every kind of drop in ``final``: why it happened and which setting keeps it."""
    out = []
    if final.discarded:
        if strategy in (CloseStrategy.Immediate, CloseStrategy.CompletePending):
            out.append(f"{final.discarded:,} points were discarded by close_strategy="
                       f"'{strategy.value}'; close_strategy='CompleteAll' (the default) "
                       "delivers them")
        else:
            out.append(f"{final.discarded:,} points were discarded: close_timeout="
                       f"{timeout:g}s ran out with no spool to keep them; a longer "
                       "close_timeout, or a spool_dir, keeps them")
    if final.in_doubt:
        if strategy is CloseStrategy.Immediate:
            out.append(f"{final.in_doubt:,} points were cut off in flight by close_strategy="
                       "'Immediate' (the service may have stored them); close_strategy="
                       "'CompleteAll' waits for their answer")
        else:
            out.append(f"{final.in_doubt:,} points were cut off in flight when close_timeout="
                       f"{timeout:g}s ran out (the service may have stored them); "
                       "a longer close_timeout, or a spool_dir, keeps them")
    if final.dropped_backpressure:
        out.append(f"{final.dropped_backpressure:,} points were dropped because the queue was "
                   f"full (event_queue_max_size={settings.event_queue_max_size:,}); a larger "
                   "event_queue_max_size or backpressure_strategy='Block' keeps them")
    if final.failed:
        where = ("the spool is off (spool_dir)" if settings.spool_dir is None
                 else "the spool was full or unwritable (spool_max_bytes, spool_dir)")
        out.append(f"{final.failed:,} points could be neither delivered nor spooled: {where}")
    return out


class Session:
    """A run being logged. Thread-safe; every ``log*`` call is cheap and never waits on I/O."""

    def __init__(
        self,
        settings: Settings,
        attributes: list[dict[str, Any]] | None = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        retry: RetryPolicy | None = None,
        batch_max_age: float | None = None,
        compress: bool | None = None,
        in_trio: bool = False,
    ) -> None:
        self.settings = settings
        self._attributes = attributes or []
        self._engine_options: dict[str, Any] = {"transport": transport, "retry": retry,
                                                "compress": compress}
        if batch_max_age is not None:
            self._engine_options["batch_max_age"] = batch_max_age
        self._in_trio = in_trio
        self._keys: dict[str, SeriesKey] = {}
        self._eval_keys: dict[str, SeriesKey] = {}
        self._other_keys: dict[tuple[Any, ...], SeriesKey] = {}
        self._interned: dict[tuple[Any, ...], SeriesKey] = {}
        self._series: list[SeriesKey] = []  # shared with the engine: index -> key
        self._plain_index: dict[Any, int] = {}  # name -> index, default scale, no labels
        self._series_lock = threading.Lock()
        rank = process_rank() if settings.distributed is Distributed.auto else None
        self._rank_label = ("rank", str(rank[0])) if rank is not None else None
        self._warned_timestamp = False
        self._close_lock = threading.Lock()
        self._final: Metrics | None = None
        self._closed_with: CloseStrategy | None = None
        self._close_timeout = settings.close_timeout
        self._exit_finalizer: _mp_util.Finalize | None = None
        self._forked = False  # this object was inherited by a forked child
        self._thread: threading.Thread | None = None
        self._stopped: threading.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._build_engine()

    def _build_engine(self) -> None:
        s = self.settings
        self._counters = Counters()
        self._inbox = Inbox(
            self._counters,
            maxsize=s.event_queue_max_size,
            strategy=s.backpressure_strategy,
            can_block=not self._in_trio,
        )
        self._engine = Engine(
            s, self._inbox, self._counters, self._series, say=self._say,
            attributes=self._attributes, **self._engine_options,
        )
        self._errors = self._engine.errors
        self._append = self._inbox.append
        self._extend = self._inbox.extend
        self._inbox.on_change = self._refresh_fast
        self._errors.on_pending = self._refresh_fast
        self._state = State.OPEN

    @property
    def _state(self) -> State:
        return self._lifecycle

    @_state.setter
    def _state(self, value: State) -> None:
        self._lifecycle = value
        self._refresh_fast()

    def __repr__(self) -> str:
        s = self.settings
        return (f"<metrana.Session {s.workspace_name}/{s.project_name}/{s.run_name} "
                f"{self._state.value} at {s.ingestion_url}>")

    @property
    def run_name(self) -> str:
        return self.settings.run_name

    @property
    def resumed(self) -> bool:
        """True when the run existed and this session resumed it."""
        return self._engine.resumed

    def _say(self, level: str, message: str) -> None:
        say(self.settings.log_level, level, message)

    # ------------------------------------------------------------ lifecycle

    def _start_thread(self, init_timeout: float = DEFAULT_INIT_TIMEOUT) -> None:
        """Start the engine thread; wait (bounded) for the run to be created."""
        started = threading.Event()
        created = threading.Event()
        self._stopped = stopped = threading.Event()
        crashed: list[BaseException] = []
        engine = self._engine

        async def main() -> None:
            token = trio.lowlevel.current_trio_token()
            self._token = token

            def wake() -> None:
                try:
                    token.run_sync_soon(engine.wake)
                except trio.RunFinishedError:
                    pass

            self._inbox.wake = wake
            engine.on_creation = created.set
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.run)
                started.set()

        def target() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # noqa: BLE001 - handed to init() below
                crashed.append(exc)
                if started.is_set():
                    # A bug in the engine itself, after start-up: never silent.
                    self._say("ERROR", f"metrana's engine stopped with an internal error: "
                                       f"{exc!r}; points not yet delivered are counted as "
                                       "discarded")
            finally:
                started.set()
                created.set()
                stopped.set()

        name = f"metrana-{self.settings.run_name}"
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()
        started.wait()
        if crashed:
            raise MetranaError(f"metrana's engine failed to start: {crashed[0]!r}") from crashed[0]
        if not created.wait(init_timeout):
            self._say(
                "WARNING",
                f"{self.settings.ingestion_url} has not answered within {init_timeout:g}s; "
                "logging continues and points are sent once it answers",
            )
        elif engine.creation_error is not None:
            self._thread.join(timeout=_EXIT_GRACE)
            self._state = State.CLOSED
            raise engine.creation_error
        live_sessions.add(self)
        # A process that ends without close() still delivers: atexit covers the main program
        # and spawned children; multiprocessing's finalizers cover forked workers (Pool,
        # Process), which leave through os._exit and never run atexit.
        self._exit_finalizer = _mp_util.Finalize(
            None, _close_at_process_exit, args=(weakref.ref(self),), exitpriority=10)

    def close(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        """Stop logging and deal with undelivered points per the close strategy.

        Args:
            timeout: seconds to wait for delivery (default ``close_timeout``, 30 s).
            strategy: override the configured close strategy for this call.

        Returns:
            The final counters: how many points were delivered, discarded, rejected...

        Raises:
            ExceptionGroup: with ``error_strategy=RaiseOnClose``, the errors collected.
        """
        if self._in_trio:
            raise RuntimeError("in a trio program use `await session.aclose()`")
        with self._close_lock:
            if self._final is None:
                if self._state is State.FORKED:
                    self._state = State.CLOSED
                    self._final = self._snapshot()
                    return self._final
                self._state = State.CLOSING
                closing = self._close_plan(timeout, strategy)
                interrupted = self._stop_engine(*closing)
                self._finish()
                if interrupted:
                    raise KeyboardInterrupt
        return self._checked_final()

    def _call_engine(self, fn: Any, *args: Any) -> None:
        if self._token is not None:
            try:
                trio.from_thread.run_sync(fn, *args, trio_token=self._token)
            except trio.RunFinishedError:
                pass

    def _stop_engine(self, strategy: CloseStrategy, timeout: float) -> bool:
        """Ask the engine to close and wait for it, reporting progress on long drains.

        A KeyboardInterrupt while waiting switches to "spool what is left and stop now";
        returns True so close() can re-raise it once the engine has stopped.
        """
        # An Event, not Thread.join(): a KeyboardInterrupt that lands inside join() can leave
        # CPython's Thread believing it has stopped while it still runs.
        stopped = self._stopped
        if stopped is None:
            return False
        deadline = time.monotonic() + timeout + SPOOL_GRACE + _EXIT_GRACE
        interrupted = requested = False
        while not stopped.is_set() and time.monotonic() < deadline:
            try:
                if not requested:
                    requested = True
                    self._call_engine(self._engine.request_close, strategy, timeout)
                stopped.wait(min(_PROGRESS_EVERY, max(deadline - time.monotonic(), 0)))
            except KeyboardInterrupt:
                if interrupted:
                    raise
                interrupted = True
                self._say("WARNING", "interrupted: writing undelivered points to the spool "
                                     "and stopping (interrupt again to abandon them)")
                self._call_engine(self._engine.spool_now)
                deadline = time.monotonic() + SPOOL_GRACE + _EXIT_GRACE
                continue
            if not stopped.is_set():
                m = self._snapshot()
                self._say("WARNING", f"closing run {self.run_name} is taking a while: "
                                     f"{m.sent:,} of {m.logged:,} points delivered, "
                                     f"{m.spooled:,} spooled, {m.pending:,} still pending")
        if not stopped.is_set():
            self._say("ERROR", "metrana's engine did not stop in time; giving up on it")
        return interrupted

    def flush(self, timeout: float | None = None) -> None:
        """Return once every point logged before the call is acknowledged by the service or
        durable in the spool (or counted as rejected/failed).

        Raises:
            MetranaFlushTimeoutError: not done within ``timeout`` seconds. Nothing is dropped:
                the points stay queued.
            MetranaLoggerClosedError: the logger is closed.
        """
        if self._in_trio:
            raise RuntimeError("in a trio program use `await session.aflush()`")
        if self._state is not State.OPEN:
            self._not_open()
        marker = FlushMarker()
        self._inbox.put_marker(marker)
        if not marker.done.wait(timeout):
            raise MetranaFlushTimeoutError(
                f"flush did not finish within {timeout:g}s; the points are still queued "
                f"({self._snapshot().pending:,} pending) and nothing was dropped"
            )
        if marker.aborted:
            raise MetranaLoggerClosedError("the logger stopped before the flush completed")

    def _close_plan(self, timeout: float | None, strategy: Any) -> tuple[CloseStrategy, float]:
        from ._enums import parse_choice

        chosen = (self.settings.close_strategy if strategy is None
                  else parse_choice(CloseStrategy, strategy, "close(strategy=...)"))
        self._closed_with = chosen
        self._close_timeout = self.settings.close_timeout if timeout is None else float(timeout)
        return chosen, self._close_timeout

    def _finish(self) -> None:
        self._state = State.CLOSED
        live_sessions.discard(self)
        if self._exit_finalizer is not None:
            self._exit_finalizer.cancel()
            self._exit_finalizer = None
        self._final = self._snapshot()
        final = self._final
        message = f"closed run {self.settings.run_name}: {final.summary()}"
        level = "WARNING" if final.dropped or final.pending or final.spooled else "SUCCESS"
        for advice in close_advice(final, self.settings, self._closed_with, self._close_timeout):
            message += f". {advice}"
        if final.spooled:
            message += (f". {final.spooled:,} points wait in {self._engine.spool_dir}: they are "
                        f"delivered by the next init() of this run, or by `metrana sync "
                        f"{self._engine.spool_dir}`")
        self._say(level, message)

    def _checked_final(self) -> Metrics:
        assert self._final is not None
        if self._errors.strategy is ErrorStrategy.RaiseOnClose:
            group = self._errors.take()
            if group is not None:
                raise group
        return self._final

    def get_metrics(self) -> Metrics:
        """A snapshot of this session's counters."""
        return self._final if self._final is not None else self._snapshot()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if exc_info[0] is not None and self._errors.strategy is ErrorStrategy.RaiseOnClose:
            # The body's exception is the one the user needs to see; ours are logged.
            try:
                self.close()
            except Exception as close_error:  # noqa: BLE001
                self._say("ERROR", f"errors while closing after an exception: {close_error!r}")
            return
        self.close()

    def _close_at_exit(self) -> None:
        """The process is ending and nobody closed this run: deliver, bounded, and say so."""
        if self._state is not State.OPEN or self._thread is None:
            return
        timeout = min(self.settings.close_timeout, 30.0)
        if not self._forked:
            self._say("WARNING", f"run {self.run_name} was not closed; delivering what is queued "
                                 f"(up to {timeout:g}s) before exit. Call metrana.close() (or use "
                                 "`with metrana.session(...)`) to close it yourself and choose "
                                 "what happens")
        try:
            # The user did not choose to discard anything: deliver all, bounded in time.
            self.close(timeout=timeout, strategy="CompleteAll")
        except Exception as exc:  # noqa: BLE001 - never turn exit into a traceback
            self._say("ERROR", f"closing run {self.run_name!r} at exit failed: {exc!r}")

    def _after_fork_in_child(self) -> None:
        """Called in a forked child: the engine thread did not survive the fork."""
        self._forked = True
        self._exit_finalizer = None  # the parent's; multiprocessing forgets it in the child
        self._state = State.FORKED
        self._close_lock = threading.Lock()

    def _restart_in_child(self) -> None:
        from ._enums import ResumeStrategy

        self.settings = self.settings.model_copy(update={"resume_strategy": ResumeStrategy.Allow})
        self._attributes = []
        self._final = None
        self._build_engine()
        self._start_thread()

    # -------------------------------------------------------------- logging

    def _snapshot(self) -> Metrics:
        return self._inbox.snapshot()

    def _refresh_fast(self) -> None:
        """Recompute the one flag the hot path reads (see :meth:`log`)."""
        self._fast = (
            self._lifecycle is State.OPEN
            and self._inbox.open
            and not self._inbox.bounded
            and not self._errors.raise_pending
        )

    def _put(self, item: Any) -> None:
        """The general path: state checks, held errors, backpressure."""
        if self._state is not State.OPEN:
            self._not_open()
        if self._errors.raise_pending:
            self._raise_held()
        self._inbox.put(item)

    def _not_open(self) -> None:
        if self._state is State.FORKED:
            self._restart_in_child()
            return
        raise MetranaLoggerClosedError(
            f"the logger is {self._state.value}; call metrana.init() to start another run"
        )

    def _raise_held(self) -> None:
        group = self._errors.take()
        self._refresh_fast()
        if group is not None:
            raise group

    def _intern(self, key: SeriesKey) -> SeriesKey:
        """The one SeriesKey object of this series, numbered in the series table.

        Under a lock: two threads using a new name at once must get one series (one step
        counter), not two that collide on the server.
        """
        with self._series_lock:
            known = self._interned.get(key.identity)
            if known is not None:
                return known
            key.index = len(self._series)
            self._series.append(key)  # before it can be queued: the engine looks it up by index
            self._interned[key.identity] = key
            return key

    def _labels(self, labels: Any, evaluation: bool) -> tuple[tuple[str, str], ...]:
        """A series' labels, with this process's rank in a distributed job (see
        ``metrana._distributed``) unless the caller set a ``rank`` label."""
        pairs = label_tuple(labels, evaluation)
        if self._rank_label and not any(key == "rank" for key, _ in pairs):
            pairs = tuple(sorted((*pairs, self._rank_label)))
        return pairs

    def _timestamp(self, value: Any) -> int:
        """A given timestamp, checked; one that looks like seconds or milliseconds warns once."""
        ns = check_timestamp(value)
        if ns < PLAUSIBLE_NS and not self._warned_timestamp:
            self._warned_timestamp = True
            self._say("WARNING", f"timestamp {ns} is before 1973 as Unix nanoseconds: it looks "
                                 "like seconds or milliseconds. Timestamps are integer "
                                 "nanoseconds (time.time_ns(), or int(seconds * 1e9)); it is "
                                 "stored as given")
        return ns

    def _key(self, name: Any, scale: Any, labels: Any, evaluation: bool) -> SeriesKey:
        """Slow path of series lookup: validate, build, cache."""
        check_name(name)
        scale_name = resolve_scale(scale)
        label_pairs = self._labels(labels, evaluation)
        key = self._intern(SeriesKey(False, name, scale_name, label_pairs))
        if labels is None:
            if scale is None:
                (self._eval_keys if evaluation else self._keys)[name] = key
                if not evaluation:
                    self._plain_index[name] = key.index
            else:
                self._other_keys[(name, scale, evaluation)] = key
        return key

    def log(
        self,
        metric_name: str | Mapping[str, Any],
        value: Any = None,
        scale: Any = None,
        step: int | None = None,
        labels: Mapping[str, str] | None = None,
        evaluation: bool = False,
        timestamp: int | None = None,
    ) -> None:
        """Log one value (``log("loss", 0.5)``) or several (``log({"loss": 0.5, "acc": 0.9})``).

        Raises:
            TypeError: the value or labels have the wrong type.
            MetranaMetricNameError: the name is empty or has whitespace.
            MetranaEventQueueFullError: the queue is full and backpressure is Raise.
        """
        # The common call — a known name, a float, nothing else — is a few identity checks, one
        # dict lookup, a clock read and one deque append. Everything else takes the general
        # path below, which validates, explains errors and applies backpressure.
        if (type(value) is float and scale is None and labels is None and step is None
                and timestamp is None and not evaluation and self._fast):
            try:
                self._append((self._plain_index[metric_name], None, None, value, _time_ns()))
                return
            except (KeyError, TypeError):
                pass  # a name seen for the first time (or not a name): the general path
        if type(metric_name) is dict:
            if (value is None and scale is None and step is None and labels is None
                    and timestamp is None and not evaluation and self._fast):
                index = self._plain_index
                now = _time_ns()
                try:
                    self._extend([(index[name], None, None,
                                   raw if type(raw) is float else coerce_value(raw, name), now)
                                  for name, raw in metric_name.items()])
                    return
                except (KeyError, TypeError):
                    pass  # a new or bad name: the general path says what is wrong
            self._log_many(metric_name, value, scale, step, labels, evaluation, timestamp)
            return
        key = None
        if labels is None and scale is None and type(metric_name) is str:
            key = (self._eval_keys if evaluation else self._keys).get(metric_name)
        if key is None:
            if type(metric_name) is dict or isinstance(metric_name, Mapping):
                self._log_many(metric_name, value, scale, step, labels, evaluation, timestamp)
                return
            if labels is None and type(metric_name) is str:
                key = self._other_keys.get((metric_name, scale, evaluation))
            if key is None:
                key = self._key(metric_name, scale, labels, evaluation)
        if type(value) is not float:
            if is_vector(value):
                self._log_block(key, value, step, timestamp)
                return
            value = coerce_value(value, key.name)
        if step is not None:
            step = check_int(step, "step")
            key.manual_seen = True
        item = (key.index, step, None, value,
                _time_ns() if timestamp is None else self._timestamp(timestamp))
        if self._fast:
            self._append(item)
        else:
            self._put(item)

    def _log_block(self, key: SeriesKey, values: Any, step: Any, timestamp: int | None) -> None:
        """``log(name, [v0, v1, ...])``: consecutive points of one series in one call."""
        floats = as_values(values, key.name)
        steps = steps_for(step, len(floats), "step")
        self._put_blocks([self._block(key, steps, None, floats, timestamp)], len(floats))

    def _block(self, key: SeriesKey, steps: Any, major: int | None, floats: list[float],
               timestamp: int | None) -> Block:
        if steps is not None:
            key.manual_seen = True
        key.vector_seen = True
        return Block(key, steps, major, floats,
                     _time_ns() if timestamp is None else self._timestamp(timestamp))

    def _put_blocks(self, blocks: list[Block], points: int) -> None:
        if self._state is not State.OPEN:
            self._not_open()
        if self._errors.raise_pending:
            self._raise_held()
        self._inbox.put_blocks(blocks, points)

    def _log_many(
        self,
        values: Mapping[str, Any],
        value: Any,
        scale: Any,
        step: int | None,
        labels: Mapping[str, str] | None,
        evaluation: bool,
        timestamp: int | None,
    ) -> None:
        if value is not None:
            raise TypeError("log(dict) takes no separate value; put the values in the dict")
        if step is not None:
            step = check_int(step, "step")
        ts = _time_ns() if timestamp is None else self._timestamp(timestamp)
        items: list[tuple[int, int | None, None, float, int]] = []
        cache = ((self._eval_keys if evaluation else self._keys)
                 if labels is None and scale is None else None)
        for name, raw in values.items():
            key = cache.get(name) if cache is not None and type(name) is str else None
            if key is None:
                key = self._key(name, scale, labels, evaluation)
            items.append((key.index, step, None, raw if type(raw) is float else coerce_value(raw, name), ts))
        if step is not None:
            for item in items:
                self._series[item[0]].manual_seen = True
        # All values are checked before any is queued: a bad one loses nothing else.
        if self._fast:
            self._extend(items)
        else:
            for item in items:
                self._put(item)

    def log_rl_step(
        self,
        metric_name: str,
        value: Any,
        evaluation: bool = False,
        step: int | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-gradient-update metric (scale ML_STEP)."""
        self.log(metric_name, value, None, step, labels, evaluation, timestamp)

    def _rl_key(self, name: Any, scale: str, env_id: Any, episode: int | None, labels: Any,
                evaluation: bool) -> SeriesKey:
        cache_key = (name, scale, env_id, episode, evaluation)
        cacheable = labels is None and type(name) is str and (env_id is None or type(env_id) is str)
        key = self._other_keys.get(cache_key) if cacheable else None
        if key is None:
            check_name(name)
            if env_id is None:
                env = ""
            elif isinstance(env_id, str):
                env = check_text(env_id, "env_id")
            elif isinstance(env_id, int) and not isinstance(env_id, bool):
                env = str(env_id)
            else:
                raise TypeError(f"env_id must be a str (or int), got {type(env_id).__name__}")
            key = self._intern(
                SeriesKey(True, name, scale, self._labels(labels, evaluation), env, episode))
            if cacheable:
                self._other_keys[cache_key] = key
        return key

    def log_rl_episode(
        self,
        metric_name: str,
        value: Any,
        rl_step: int,
        evaluation: bool = False,
        episode: int | None = None,
        env_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-episode metric (scale EPISODE); ``episode`` is the step, auto-incremented."""
        key = None
        if labels is None and (env_id is None or type(env_id) is str):
            key = self._other_keys.get((metric_name, "EPISODE", env_id, None, evaluation))
        if key is None:
            key = self._rl_key(metric_name, "EPISODE", env_id, None, labels, evaluation)
        if type(rl_step) is not int or not 0 <= rl_step <= MAX_STEP:
            rl_step = check_int(rl_step, "rl_step")
        if episode is not None:
            episode = check_int(episode, "episode")
        if type(value) is not float:
            value = coerce_value(value, metric_name)
        item = (key.index, episode, rl_step, value,
                _time_ns() if timestamp is None else self._timestamp(timestamp))
        if self._fast:
            self._append(item)
        else:
            self._put(item)

    def log_rl_environment_step(
        self,
        metric_name: str,
        value: Any,
        rl_step: int,
        evaluation: bool = False,
        env_step: int | None = None,
        episode: int | None = None,
        env_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """A per-environment-interaction metric (scale ENVIRONMENT_STEP); ``env_step`` is the
        step, auto-incremented per (metric, env, episode, labels) series.

        Vectorized: ``env_id=[...]`` (M environments) with ``value`` of shape ``[M]`` or
        ``[M, T]`` (T consecutive steps per environment), ``episode`` an int or M ints; or one
        ``env_id`` with a 1-D ``value`` of T steps. ``env_step`` is then the first step.
        """
        key = None
        if (labels is None and type(value) is float and (env_id is None or type(env_id) is str)
                and (episode is None or type(episode) is int)):
            key = self._other_keys.get((metric_name, "ENVIRONMENT_STEP", env_id, episode,
                                        evaluation))
        if key is None:
            if is_vector(env_id) or is_vector(value):
                self._log_env_steps(metric_name, value, rl_step, evaluation, env_step, episode,
                                    env_id, labels, timestamp)
                return
            if episode is not None:
                episode = check_int(episode, "episode")
            key = self._rl_key(metric_name, "ENVIRONMENT_STEP", env_id, episode, labels,
                               evaluation)
        if type(rl_step) is not int or not 0 <= rl_step <= MAX_STEP:
            rl_step = check_int(rl_step, "rl_step")
        if env_step is not None:
            env_step = check_int(env_step, "env_step")
        if type(value) is not float:
            value = coerce_value(value, metric_name)
        item = (key.index, env_step, rl_step, value,
                _time_ns() if timestamp is None else self._timestamp(timestamp))
        if self._fast:
            self._append(item)
        else:
            self._put(item)


    def _log_env_steps(self, name: str, values: Any, rl_step: Any, evaluation: bool,
                       env_step: Any, episode: Any, env_id: Any, labels: Any,
                       timestamp: int | None) -> None:
        rl_step = check_int(rl_step, "rl_step")
        if is_vector(env_id):
            envs = env_id.tolist() if hasattr(env_id, "tolist") else list(env_id)
            value_rows = rows(values, len(envs), name)
            episodes = per_env(episode, len(envs), "episode")
        else:
            envs, value_rows, episodes = [env_id], [as_values(values, name)], [episode]
        blocks = []
        points = 0
        for env, ep, floats in zip(envs, episodes, value_rows, strict=True):
            ep = None if ep is None else check_int(ep, "episode")
            key = self._rl_key(name, "ENVIRONMENT_STEP", env, ep, labels, evaluation)
            steps = steps_for(env_step, len(floats), "env_step")
            blocks.append(self._block(key, steps, rl_step, floats, timestamp))
            points += len(floats)
        self._put_blocks(blocks, points)


class TrioSession(Session):
    """A session whose engine runs in the caller's trio nursery (``open_session``)."""

    async def aclose(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        """Close per the close strategy, waiting in trio (see :meth:`Session.close`)."""
        if self._final is None and self._state is not State.CLOSING:
            self._state = State.CLOSING
            self._engine.request_close(*self._close_plan(timeout, strategy))
            await self._engine.finished.wait()
            self._finish()
        elif self._final is None:
            await self._engine.finished.wait()
        return self._checked_final()

    async def aflush(self) -> None:
        """Wait until every point logged so far is acknowledged or durable in the spool."""
        if self._state is not State.OPEN:
            self._not_open()
        marker = FlushMarker()
        self._inbox.put_marker(marker)
        await marker.trio_done.wait()
        if marker.aborted:
            raise MetranaLoggerClosedError("the logger stopped before the flush completed")

    async def wait_for_room(self) -> None:
        """With a bounded queue: wait until ``log()`` would not hit backpressure."""
        while not self._inbox.has_room():
            self._engine.wake()
            await trio.sleep(0.005)



class DisabledSession(Session):
    """What ``init()`` returns on ranks other than 0 with ``distributed="rank0"``.

    Every call is accepted and does nothing: no engine, no thread, no network, so a rank that
    is told not to log can never stall the job. ``get_metrics()`` stays all zero.
    """

    def __init__(self, settings: Settings, rank: int) -> None:  # noqa: D107 - no engine
        self.settings = settings
        self.rank = rank
        self._state = State.OPEN
        self._final = None

    @property
    def _state(self) -> State:
        return self._lifecycle

    @_state.setter
    def _state(self, value: State) -> None:
        self._lifecycle = value

    def __repr__(self) -> str:
        s = self.settings
        return (f"<metrana.Session {s.workspace_name}/{s.project_name}/{s.run_name} "
                f"disabled on rank {self.rank} (distributed='rank0')>")

    @property
    def resumed(self) -> bool:
        return False

    def _start_thread(self, init_timeout: float = DEFAULT_INIT_TIMEOUT) -> None:
        return None

    def log(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_rl_step(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_rl_episode(self, *args: Any, **kwargs: Any) -> None:
        return None

    def log_rl_environment_step(self, *args: Any, **kwargs: Any) -> None:
        return None

    def flush(self, timeout: float | None = None) -> None:
        return None

    async def aflush(self) -> None:
        return None

    async def wait_for_room(self) -> None:
        return None

    def get_metrics(self) -> Metrics:
        return Counters().snapshot()

    def close(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        self._state = State.CLOSED
        return self.get_metrics()

    async def aclose(self, timeout: float | None = None, *, strategy: Any = None) -> Metrics:
        return self.close()

    def _close_at_exit(self) -> None:
        return None

    def _after_fork_in_child(self) -> None:
        return None

    def __exit__(self, *exc_info: object) -> None:
        self.close()

"""ThreadSession: a run whose engine runs on its own background thread (``init()``, ``session()``).

Everything a thread adds to the shared base: starting the engine thread and waiting (bounded)
for the run to be created; ``close()`` and ``flush()`` that wait from the caller's thread,
report progress on a long drain and turn a Ctrl-C into "spool what is left and stop"; a
forked child's fresh engine; and closing at process exit when nobody did.
"""

from __future__ import annotations

import multiprocessing.util as _mp_util
import os
import threading
import time
import weakref
from typing import Any

import trio

from . import _terminate
from ._actors.flush import FlushMarker
from ._config import Settings
from ._engine import SPOOL_GRACE, EngineOptions
from ._enums import ErrorStrategy, ResumeStrategy
from ._exceptions import MetranaError, MetranaFlushTimeoutError, MetranaLoggerClosedError
from ._session import BaseSession, State
from ._stats import Metrics

__all__ = ["DEFAULT_INIT_TIMEOUT", "ThreadSession", "live_sessions"]

DEFAULT_INIT_TIMEOUT = 10.0
_EXIT_GRACE = 5.0
_PROGRESS_EVERY = 5.0  # seconds between progress messages while close() drains

# Sessions whose engine thread is running: closed at exit, restarted in a forked child.
live_sessions: weakref.WeakSet[ThreadSession] = weakref.WeakSet()


def _close_at_process_exit(ref: weakref.ref[ThreadSession]) -> None:
    session = ref()
    if session is not None:
        session._close_at_exit()


def _spool_at_sigterm(deadline: float) -> None:
    """The process got SIGTERM (see :mod:`._terminate`): every open run writes what it holds
    to its spool, all at once, until ``deadline``; each then says what became of its points."""
    try:
        sessions = list(live_sessions)
    except RuntimeError:  # the set changed while it was copied (a thread closing a run)
        sessions = list(live_sessions)
    stopping = [session for session in sessions if session._spool_for_exit()]
    for session in stopping:
        session._end_after_sigterm(deadline)


class ThreadSession(BaseSession):
    """A run being logged, its engine on a background thread. Thread-safe."""

    def __init__(self, settings: Settings, attributes: list[dict[str, Any]] | None = None, *,
                 options: EngineOptions | None = None) -> None:
        # Reentrant: SIGTERM may interrupt close() in the thread that holds it (see
        # _end_after_sigterm), which then still says what became of the points.
        self._close_lock = threading.RLock()
        self._exit_finalizer: _mp_util.Finalize | None = None
        self._forked = False  # this object was inherited by a forked child
        self._thread: threading.Thread | None = None
        self._stopped: threading.Event | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        super().__init__(settings, attributes, options=options, can_block=True)

    # ------------------------------------------------------------------ start

    def start(self, init_timeout: float = DEFAULT_INIT_TIMEOUT) -> None:
        """Start the engine thread; wait (bounded) for the run to be created.

        Raises what creating the run raised (a refusal); returns with a warning when the
        service has not answered within ``init_timeout`` (the engine keeps trying).
        """
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
            except BaseException as exc:  # noqa: BLE001 - handed to start() below
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

        self._thread = threading.Thread(target=target, name=f"metrana-{self.settings.run_name}",
                                        daemon=True)
        self._thread.start()
        started.wait()
        if crashed:
            raise MetranaError(f"metrana's engine failed to start: {crashed[0]!r}") from crashed[0]
        answered = created.wait(init_timeout)
        # Cleared before creation_error is read (the engine sets them in the other order), so
        # an error is raised here or printed by the engine, never lost between the two.
        engine.init_waits = False
        if engine.creation_error is not None:
            self._thread.join(timeout=_EXIT_GRACE)
            self._state = State.CLOSED
            raise engine.creation_error
        if not answered:
            self._say("WARNING", f"{self.settings.ingestion_url} has not answered within "
                                 f"{init_timeout:g}s; logging continues and points are sent "
                                 "once it answers")
        live_sessions.add(self)
        # SIGTERM (Pool.terminate, Slurm, Kubernetes) writes what is in memory to the spool
        # before the process ends, if nobody else handles SIGTERM.
        _terminate.install(_spool_at_sigterm)
        # A process that ends without close() still delivers: atexit covers the main program
        # and spawned children; multiprocessing's finalizers cover forked workers (Pool,
        # Process), which leave through os._exit and never run atexit.
        self._exit_finalizer = _mp_util.Finalize(
            None, _close_at_process_exit, args=(weakref.ref(self),), exitpriority=10)

    # ------------------------------------------------------------------ close

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
        with self._close_lock:
            if self._final is None:
                if self._state is State.FORKED:
                    self._state = State.CLOSED
                    self._final = self._snapshot()
                    return self._final
                interrupted = self._stop_engine(*self._close_plan(timeout, strategy))
                self._finish()
                if interrupted:
                    raise KeyboardInterrupt
        return self._checked_final()

    def _finish(self, ended_by: str | None = None) -> None:
        live_sessions.discard(self)
        if not live_sessions and ended_by is None:
            _terminate.uninstall()
        if self._exit_finalizer is not None:
            self._exit_finalizer.cancel()
            self._exit_finalizer = None
        super()._finish(ended_by)

    def _call_engine(self, fn: Any, *args: Any) -> None:
        if self._token is not None:
            try:
                trio.from_thread.run_sync(fn, *args, trio_token=self._token)
            except trio.RunFinishedError:
                pass

    def _stop_engine(self, strategy: Any, timeout: float) -> bool:
        """Ask the engine to close and wait for it, reporting progress on long drains.

        A KeyboardInterrupt while waiting switches to "spool what is left and stop now";
        returns True so close() can re-raise it once the engine has stopped.
        """
        # An Event, not Thread.join(): a KeyboardInterrupt that lands inside join() can leave
        # CPython's Thread believing it has stopped while it still runs.
        stopped = self._stopped
        if stopped is None:
            self._state = State.CLOSING
            return False
        deadline = time.monotonic() + timeout + SPOOL_GRACE + _EXIT_GRACE
        interrupted = requested = False
        while not stopped.is_set() and time.monotonic() < deadline:
            try:
                if not requested:
                    requested = True
                    self._call_engine(self._engine.request_close, strategy, timeout)
                    self._state = State.CLOSING  # the engine has it: intake is closed
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
                self._say("SUCCESS", f"closing run {self.run_name}: "
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

    def __enter__(self) -> ThreadSession:
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

    # ------------------------------------------------------- exit and fork

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

    # ------------------------------------------------------------- SIGTERM

    def _spool_for_exit(self) -> bool:
        """SIGTERM, in the main thread, at any point of it: ask the engine to spool what it
        holds. Never waits (the engine may need a lock the interrupted code holds); True when
        the engine was asked."""
        token, stopped = self._token, self._stopped
        if (self._state not in (State.OPEN, State.CLOSING) or token is None or stopped is None
                or stopped.is_set()):
            return False
        try:
            token.run_sync_soon(self._engine.spool_for_exit, _terminate.TERM_BOUND)
        except trio.RunFinishedError:
            return False
        return True

    def _end_after_sigterm(self, deadline: float) -> None:
        """Wait (until ``deadline``) for the engine to finish spooling; say what happened."""
        assert self._stopped is not None
        self._stopped.wait(max(0.0, deadline - time.monotonic()))
        if not self._close_lock.acquire(blocking=False):
            return  # another thread is closing this run: it says what happened
        try:
            if self._final is None:
                self._finish(ended_by="SIGTERM")
        finally:
            self._close_lock.release()

    def _after_fork_in_child(self) -> None:
        """Called in a forked child: the engine thread did not survive the fork."""
        self._forked = True
        self._exit_finalizer = None  # the parent's; multiprocessing forgets it in the child
        self._state = State.FORKED
        self._close_lock = threading.RLock()

    def _not_open(self) -> None:
        if self._state is State.FORKED:
            self._restart_in_child()
            return
        super()._not_open()

    def _restart_in_child(self) -> None:
        """A forked child's first call: its own engine, connection and session (its points
        are appended after the parent's by the server)."""
        # Another writer of the run than its parent: its log_distributed points apart.
        self.settings = self.settings.model_copy(update={
            "resume_strategy": ResumeStrategy.Allow,
            "logger_id": f"{self.settings.logger_id}:{os.getpid()}"})
        self._attributes = []
        self._check_reruns = False  # it logs alongside its parent: not a rerun of the run
        self._final = None
        self._build_engine()
        self._engine.joins_parent = True
        self.start()

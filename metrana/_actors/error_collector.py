"""ErrorCollector: the only place that knows the error strategy."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

import trio

from .._enums import ErrorStrategy
from .._stats import Counters

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import ExceptionGroup

__all__ = ["ErrorCollector"]

_KEEP = 100  # errors kept for RaiseOnLog / RaiseOnClose; more are counted, not kept
NAMED_SERIES = 10  # Warn names this many series' errors of one type; later series are counted


class ErrorCollector:
    """Receives errors from the actors and surfaces them per the error strategy.

    Silent ignores them, Warn prints each kind once, RaiseOnLog raises them from the next
    ``log()`` and RaiseOnClose from ``close()``, as an ExceptionGroup of the real errors.

    For Warn, an error that names its series (a step error) is a kind of its own in each
    series: a second series' different mistake is named too, not hidden behind the first.
    Past :data:`NAMED_SERIES` series, one more line says that further series are only counted.
    """

    def __init__(
        self,
        strategy: ErrorStrategy,
        counters: Counters,
        warn: Callable[[str], None],
        maxsize: int = 0,
    ) -> None:
        self.strategy = strategy
        self._counters = counters
        self._warn = warn
        self._send, self._receive = trio.open_memory_channel[BaseException](
            maxsize if maxsize else float("inf")
        )
        self._seen: set[tuple[type[BaseException], object, object]] = set()
        self._series_named: dict[type[BaseException], int] = {}
        self._held: list[BaseException] = []
        self._held_lock = threading.Lock()
        self.overflow = 0
        self.raise_pending = False
        self.on_pending: Callable[[], None] = lambda: None  # tells the session's fast path

    def report(self, error: BaseException) -> None:
        """Queue an error without waiting (any actor, in the engine's thread)."""
        try:
            self._send.send_nowait(error)
        except trio.WouldBlock:
            self.overflow += 1
        except trio.ClosedResourceError:
            self._handle(error)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._receive:
            task_status.started()
            async for error in self._receive:
                self._handle(error)

    async def aclose(self) -> None:
        """No more errors will come; the run loop finishes what is queued and returns."""
        await self._send.aclose()

    def _handle(self, error: BaseException) -> None:
        self._counters.errors += 1
        if self.strategy is ErrorStrategy.Silent:
            return
        if self.strategy is ErrorStrategy.Warn:
            self._warn_once(error)
            return
        with self._held_lock:
            if len(self._held) < _KEEP:
                self._held.append(error)
            else:
                self.overflow += 1
            self.raise_pending = self.strategy is ErrorStrategy.RaiseOnLog
        if self.raise_pending:
            self.on_pending()

    def _warn_once(self, error: BaseException) -> None:
        series = getattr(error, "series", None)
        kind = (type(error), getattr(error, "status", None), series)
        if kind in self._seen:
            return
        if series is None:
            self._seen.add(kind)
            self._warn(f"{error} (further errors of this kind are counted in get_metrics())")
            return
        named = self._series_named.get(type(error), 0)
        self._series_named[type(error)] = named + 1
        if named < NAMED_SERIES:
            self._seen.add(kind)
            self._warn(f"{error} (further errors in this series are counted in get_metrics())")
        elif named == NAMED_SERIES:
            self._warn(f"{type(error).__name__} in more than {NAMED_SERIES} series: further "
                       f"series are not named, only counted in get_metrics(); the "
                       f"{NAMED_SERIES + 1}th: {error}")

    def take(self) -> ExceptionGroup[Exception] | None:
        """The errors held so far as one group (and forget them), or None."""
        with self._held_lock:
            held, self._held = self._held, []
            overflow, self.overflow = self.overflow, 0
            self.raise_pending = False
        if not held:
            return None
        more = f" (and {overflow} more)" if overflow else ""
        return ExceptionGroup(
            f"metrana: {len(held)} error(s) in the background{more}",
            [e if isinstance(e, Exception) else RuntimeError(repr(e)) for e in held],
        )

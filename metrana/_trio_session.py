"""TrioSession: a run whose engine runs in the caller's own trio nursery (no thread).

``log()`` stays synchronous and cheap; what waits is awaited instead: closing, flushing, and
room in a bounded queue (a synchronous ``log()`` cannot block the event loop, so with
``backpressure_strategy="Block"`` it raises and ``await run.wait_for_room()`` is the way).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._actors.flush import FlushMarker
from ._config import Settings
from ._engine import EngineOptions
from ._exceptions import MetranaLoggerClosedError
from ._session import BaseSession, State
from ._stats import Metrics

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

__all__ = ["TrioSession"]


class TrioSession(BaseSession):
    """A run being logged from a trio program (``async with metrana.open_session(...)``)."""

    def __init__(self, settings: Settings, attributes: list[dict[str, Any]] | None = None, *,
                 options: EngineOptions | None = None) -> None:
        super().__init__(settings, attributes, options=options, can_block=False)

    @asynccontextmanager
    async def running(self, init_timeout: float) -> AsyncIterator[TrioSession]:
        """Run the engine in a nursery of this task for the block; close per the close
        strategy when it ends, also when the body raises."""
        engine = self._engine
        body_error: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._inbox.wake = engine.wake
                await nursery.start(engine.run)
                with trio.move_on_after(init_timeout):
                    await engine.creation_done.wait()
                engine.init_waits = False  # from now on the engine says a fatal error itself
                if engine.creation_error is not None:
                    await engine.finished.wait()
                    self._state = State.CLOSED
                    body_error = engine.creation_error
                    raise body_error
                try:
                    yield self
                except BaseException as exc:
                    body_error = exc
                    raise
                finally:
                    with trio.CancelScope(shield=True):
                        await self.aclose()
        except BaseExceptionGroup as group:
            # The nursery wraps what the body raised; hand the user their own exception back.
            if body_error is not None and list(group.exceptions) == [body_error]:
                raise body_error from None
            raise

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

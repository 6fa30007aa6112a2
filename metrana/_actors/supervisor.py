"""Supervision: an actor that crashes must neither hang the caller nor stop delivery silently."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import trio

from .._exceptions import MetranaError

__all__ = ["supervised"]


def supervised(
    name: str,
    actor: Callable[..., Awaitable[None]],
    on_crash: Callable[[BaseException], None],
) -> Callable[..., Awaitable[None]]:
    """Wrap ``actor.run`` so a crash is reported (and the engine told) instead of
    tearing down the nursery with a traceback the user never asked for."""

    async def run(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await actor(task_status=task_status)
        except Exception as exc:  # noqa: BLE001 - cancellation is a BaseException and passes
            error = MetranaError(f"metrana's {name} stopped unexpectedly: {exc!r}")
            error.__cause__ = exc  # the traceback travels with what the error strategy raises
            on_crash(error)

    return run

"""Shared fixtures: a real ``metrana serve`` on an ephemeral loopback port, real SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from metrana.server import ServerInfo, background_server, serve


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ServerInfo]:
    """A server running in the test's own trio loop (for trio tests)."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            lambda task_status: serve(
                db_path=tmp_path / "server.sqlite3", port=0, task_status=task_status
            )
        )
        yield info
        nursery.cancel_scope.cancel()


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[ServerInfo]:
    """A server on its own thread (for synchronous tests)."""
    with background_server(tmp_path / "server.sqlite3") as info:
        yield info

"""Shared fixtures: a real ``metrana serve`` on an ephemeral loopback port, real SQLite."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from metrana._actors.dispatcher import RetryPolicy
from metrana.server import ServerInfo, background_server, serve
from tests.faults import FaultProxy, running_proxy


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


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerInfo]:
    """``metrana serve`` in its own process, shared by the tests (each uses its own run names).

    A separate process, as in real use: the client's and the server's work do not compete for
    one interpreter lock.
    """
    db = tmp_path_factory.mktemp("live") / "server.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    assert url, "metrana serve did not start"
    try:
        yield ServerInfo(url=url, db_path=db)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


@pytest.fixture
def thread_server(tmp_path: Path) -> Iterator[ServerInfo]:
    """A server on a thread of this process, private to one test."""
    with background_server(tmp_path / "server.sqlite3") as info:
        yield info


@pytest.fixture
def proxy(live_server: ServerInfo) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of a real server."""
    with running_proxy(live_server.url) as p:
        yield p


@pytest.fixture
def fast_retry() -> RetryPolicy:
    """Short backoff so failure tests take milliseconds, not the production seconds."""
    return RetryPolicy(initial=0.01, multiplier=1.5, max_delay=0.05, max_attempts=6)


@pytest.fixture
def spool_root(tmp_path: Path) -> Path:
    """The test's own spool directory (METRANA_SPOOL_DIR), never the user's ~/.metrana."""
    return tmp_path / "spool"


@pytest.fixture(autouse=True)
def clean_metrana(monkeypatch: pytest.MonkeyPatch, spool_root: Path) -> Iterator[None]:
    """No METRANA_* variable leaks into a test, spools stay in the test's directory, and no
    global run outlives the test."""
    import os

    import metrana._api as api

    for name in list(os.environ):
        if name.startswith("METRANA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("METRANA_SPOOL_DIR", str(spool_root))
    yield
    current = api._session
    if current is not None and current._final is None:
        try:
            current.close(timeout=5, strategy="Immediate")
        except Exception:  # noqa: BLE001 - the test already reported what matters
            pass
    api._reset()


@pytest.fixture
def loguru_messages() -> Iterator[list[str]]:
    """What metrana printed through loguru during the test."""
    from loguru import logger

    messages: list[str] = []
    handler = logger.add(lambda m: messages.append(str(m)), level="TRACE", format="{level} {message}")
    yield messages
    logger.remove(handler)

"""Shared fixtures: a real ``metrana serve`` on an ephemeral loopback port, on real SQLite or a
real (throwaway) PostgreSQL.

``db_target`` is the one switch between the two stores: a test (or fixture) that takes it runs
once on a SQLite file and once on a fresh PostgreSQL database (``CREATE DATABASE`` in a cluster
started once per session, dropped after the test).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio

from metrana._thread_session import ThreadSession
from metrana._transport import RetryPolicy
from metrana.server import ServerInfo, background_server, serve
from tests.faults import FaultProxy, running_proxy
from tests.pgcluster import Cluster, throwaway_cluster
from tests.support import STORES, start_serve, stop_serve

# What a run records besides what the user logs — the context attributes and the system
# metrics' points — is off for the suite (its processes inherit this environment), so that a
# test of something else counts exactly the points and attributes it sent. The tests of those
# features turn them on with init(capture_context=True, system_metrics_interval=...) and
# check the defaults with these variables unset (tests/client/test_run_context.py).
QUIET_ENV = {"METRANA_CAPTURE_CONTEXT": "false", "METRANA_SYSTEM_METRICS_INTERVAL": "0"}
os.environ.update(QUIET_ENV)  # servers and clients started before a test's own fixture


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster for the whole session (started only if a test asks for it)."""
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture
def pg_database(pg_cluster: Cluster) -> Iterator[str]:
    """A fresh, empty PostgreSQL database: its URL. Dropped after the test."""
    name = pg_cluster.create_database()
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture(params=STORES)
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``--db`` takes: a SQLite file, or a fresh PostgreSQL database's URL."""
    if request.param == "sqlite":
        return str(tmp_path / "server.sqlite3")
    return str(request.getfixturevalue("pg_database"))


@pytest.fixture
async def server(db_target: str) -> AsyncIterator[ServerInfo]:
    """A server running in the test's own trio loop (for trio tests), on either store."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(
            lambda task_status: serve(db_path=db_target, port=0, task_status=task_status)
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
    proc, url = start_serve(db)
    try:
        yield ServerInfo(url=url, db_path=db)
    finally:
        stop_serve(proc)


@pytest.fixture(scope="session")
def live_pg_server(pg_cluster: Cluster) -> Iterator[ServerInfo]:
    """``metrana serve --db postgresql://...`` in its own process, shared like ``live_server``."""
    url_db = pg_cluster.url(pg_cluster.create_database("live"))
    proc, url = start_serve(url_db)
    try:
        yield ServerInfo(url=url, db_path=url_db)
    finally:
        stop_serve(proc)


@pytest.fixture(params=STORES)
def any_live_server(request: pytest.FixtureRequest) -> ServerInfo:
    """``live_server`` or ``live_pg_server``: for the end-to-end client tests run on both."""
    name = "live_server" if request.param == "sqlite" else "live_pg_server"
    info: ServerInfo = request.getfixturevalue(name)
    return info


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
    # init() exports the job's id for children: undone after the test, as is a launcher's
    # job id the suite itself may run under (a Slurm allocation).
    for name in ("METRANA_ORCHESTRATION_ID", "TORCHELASTIC_RUN_ID", "SLURM_JOB_ID",
                 "SLURM_STEP_ID", "RAY_JOB_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("METRANA_SPOOL_DIR", str(spool_root))
    for name, value in QUIET_ENV.items():
        monkeypatch.setenv(name, value)
    yield
    current = api._session
    if isinstance(current, ThreadSession) and current._final is None:
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

"""The known project (:mod:`tests.query.data`), logged once on each live server (SQLite and
PostgreSQL), and a client of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metrana.query import QueryClient
from metrana.server import ServerInfo
from tests.query.data import PROJECT, WORKSPACE, log_project

_LOGGED: set[str] = set()


def holding_known(server: ServerInfo) -> ServerInfo:
    """``server``, once it holds the known project (logged the first time it is asked)."""
    if server.url not in _LOGGED:
        log_project(server.url)
        _LOGGED.add(server.url)
    return server


@pytest.fixture
def known_server(any_live_server: ServerInfo) -> ServerInfo:
    """A live server (each store in turn) holding the known project."""
    return holding_known(any_live_server)


@pytest.fixture
def client(known_server: ServerInfo) -> Iterator[QueryClient]:
    with QueryClient(WORKSPACE, PROJECT, url=known_server.url) as c:
        yield c

"""The known project (:mod:`tests.query.data`), logged once on each live server (SQLite and
PostgreSQL), and a client of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from metrana.query import QueryClient
from metrana.server import ServerInfo
from tests.query.data import PROJECT, WORKSPACE, log_project

_LOGGED: set[str] = set()


@pytest.fixture
def known_server(any_live_server: ServerInfo) -> ServerInfo:
    """A live server (each store in turn) holding the known project."""
    if any_live_server.url not in _LOGGED:
        log_project(any_live_server.url)
        _LOGGED.add(any_live_server.url)
    return any_live_server


@pytest.fixture
def client(known_server: ServerInfo) -> Iterator[QueryClient]:
    with QueryClient(WORKSPACE, PROJECT, url=known_server.url) as c:
        yield c

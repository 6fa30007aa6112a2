"""Fixtures of the server tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from metrana.server import ServerInfo


@pytest.fixture
async def client(server: ServerInfo) -> Any:
    """An HTTP client of a real server (either store) holding the run ``ws/proj/run-001``."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        response = await c.post("/v1/runs", json={
            "run": {"workspace": "ws", "project": "proj", "runName": "run-001"},
            "createProjectIfMissing": True})
        assert response.status_code == 200
        yield c

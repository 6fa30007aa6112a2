"""A mock ingestion service for narrow engine tests: an ``httpx.MockTransport`` handler that
records every request (trio time, path, body) and answers by a rule of the test's.

End-to-end claims use a real ``metrana serve``; this is for what is easier to see from the
inside: which requests, in which order, at which (virtual, ``autojump_clock``) times.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from metrana._config import resolve_settings
from metrana._engine import EngineOptions
from metrana._trio_session import TrioSession

__all__ = ["MockService", "Seen", "mock_session"]


@attrs.define
class Seen:
    """One request as the service received it, and what it answered."""

    time: float
    path: str
    body: dict[str, Any]
    status: int = 0

    @property
    def update(self) -> bool:
        return self.path.endswith(":update")

    def values(self, name: str | None = None) -> list[float]:
        """The values of the points this request carried (of metric ``name``, or all)."""
        return [p.get("floatValue", 0.0) for u in self.body.get("runUpdates", [])
                for s in [*u.get("series", []), *u.get("rlSeries", [])]
                if name is None or s["metricName"] == name for p in s.get("points", [])]


Rule = Callable[[Seen], "int | Awaitable[int]"]


class MockService:
    """Answers ``POST /v1/runs`` with 200 (409 once the run exists) and every update with
    ``rule(request)`` (default 200); the rule may await (a slow or hung service) or raise an
    ``httpx.TransportError`` (a service that cannot be reached). While ``down`` is True every
    request, ``POST /v1/runs`` too, fails to connect, with an error that is not classified
    (as a connection that times out: a service that may be there); while ``refused``, with a
    definite "connection refused" (nothing listens). The question of where a run's series end
    (``POST /api/query/series``) is answered 404, as the hosted service does, unless ``ends``
    gives its answer (a list of series) or the status to answer with."""

    def __init__(self, rule: Rule | None = None, *, down: bool = False,
                 create: Callable[[Seen], int] | None = None,
                 ends: list[dict[str, Any]] | int | None = None) -> None:
        self.rule = rule
        self.down = down
        self.refused = False
        self.create = create  # answers POST /v1/runs instead, when given
        self.ends = ends
        self.requests: list[Seen] = []
        self.runs: set[str] = set()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        content = request.content
        if request.headers.get("content-encoding") == "gzip":
            content = gzip.decompress(content)
        seen = Seen(trio.current_time(), request.url.path,
                    json.loads(content) if content else {})
        self.requests.append(seen)
        if self.refused:
            error = httpx.ConnectError("[Errno 111] Connection refused")
            error.__cause__ = ConnectionRefusedError(111, "Connection refused")
            raise error
        if self.down:  # no cause attached: not classified as a definite refusal
            raise httpx.ConnectError("[Errno 111] Connection refused")
        if request.url.path == "/api/query/series":
            if self.ends is None or isinstance(self.ends, int):
                status = 404 if self.ends is None else self.ends
                return httpx.Response(status, json={"message": f"mock answered {status}"})
            return httpx.Response(200, json={"series": self.ends})
        if request.url.path.endswith("/runs") and self.create is not None:
            status = self.create(seen)
        elif request.url.path.endswith("/runs"):
            run = json.dumps(seen.body["run"], sort_keys=True)
            status = 409 if run in self.runs else 200
            self.runs.add(run)
        elif self.rule is None:
            status = 200
        else:
            answer = self.rule(seen)
            status = answer if isinstance(answer, int) else await answer
        seen.status = status
        return httpx.Response(status, json={"message": f"mock answered {status}"})

    def updates(self) -> list[Seen]:
        return [s for s in self.requests if s.update]

    def delivered(self, name: str | None = None) -> list[float]:
        """Values of the points in updates the service accepted, in the order it got them."""
        return [v for s in self.updates() if 200 <= s.status < 300 for v in s.values(name)]

    def point_updates(self) -> list[Seen]:
        """Updates that carried points (not the config, not closeRun, not a probe)."""
        return [s for s in self.updates() if s.values()]


def mock_session(service: MockService, spool: Path | None = None,
                 **arguments: Any) -> TrioSession:
    """A TrioSession of run ws/proj/run (a loopback URL: no gzip) talking to ``service``.

    ``retry``, ``batch_max_age`` and ``attributes`` go to the engine's options / the run's
    config; everything else is an ``init()`` argument.
    """
    options = {k: arguments.pop(k) for k in ("retry", "batch_max_age", "compress")
               if k in arguments}
    attributes = arguments.pop("attributes", None)
    arguments.setdefault("system_metrics_interval", 0)  # as the suite (tests/conftest.py)
    settings = resolve_settings({"workspace_name": "ws", "project_name": "proj",
                                 "run_name": "run", "ingestion_url": "http://127.0.0.1:9",
                                 "log_level": "Off", "spool_dir": spool, **arguments},
                                environ={})
    return TrioSession(settings, attributes,
                       options=EngineOptions(transport=httpx.MockTransport(service), **options))

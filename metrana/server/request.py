"""A request as the app's route handlers see it: its parts, and who it speaks for once
authenticated; and where it came from (the client's address counts failed keys)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from .access import Principal

__all__ = ["Receive", "Reply", "Request", "Scope", "client_address", "server_port"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Reply = tuple[int, Any, list[tuple[bytes, bytes]]]  # status, payload, extra headers


def client_address(scope: Scope) -> str:
    """The client's address, as failed authentications are counted and logged."""
    client = scope.get("client")
    return str(client[0]) if client else "an unknown address"


def server_port(scope: Scope) -> int | None:
    server = scope.get("server")
    return int(server[1]) if server and server[1] is not None else None


@attrs.define
class Request:
    """What a route handler gets: the request, and who it speaks for once authenticated."""

    scope: Scope
    headers: dict[bytes, bytes]
    receive: Receive
    method: str
    path: str
    who: Principal | None = None

    @property
    def principal(self) -> Principal:
        assert self.who is not None, "an endpoint with a need is authenticated first"
        return self.who

    @property
    def address(self) -> str:
        return client_address(self.scope)

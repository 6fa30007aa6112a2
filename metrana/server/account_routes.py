"""The routes of who may come in: the dashboard's sign-in (``/api/session``, :mod:`.sessions`)
and key management (``/api/keys/create|list|revoke``, :mod:`.keys_admin`), each a function of
the app (:class:`App`: its store, authenticator, and request helpers) and the request.

A new key is in the answer of ``create`` (once: the caller shows it); nothing else here ever
answers with a key, a hash or a session token (the token goes in the cookie only).
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import trio

from .access import ANONYMOUS, Principal
from .auth import Authenticator
from .errors import QueryError, Unauthenticated
from .keys_admin import create_key, key_json, list_keys, revoke_key
from .request import Reply, Request, server_port
from .sessions import clear_cookie, cookie_name, set_cookie
from .store import Store

__all__ = ["App", "create", "listing", "revoke", "session"]


class App(Protocol):
    """What these routes use of the app."""

    store: Store
    auth: Authenticator

    async def authenticate(self, request: Request) -> Principal: ...

    async def read_json(self, request: Request) -> Any: ...


def _who(principal: Principal) -> dict[str, Any]:
    """Who is signed in, as ``/api/session`` says it (never the key itself)."""
    return {"signed_in": principal.csrf is not None, "key": principal.shown,
            "role": principal.role.word, "workspaces": sorted(principal.workspaces),
            "csrf": principal.csrf}


async def _object(app: App, request: Request) -> dict[str, Any]:
    body = await app.read_json(request)
    if not isinstance(body, dict):
        raise QueryError("the body is a JSON object")
    return body


async def session(app: App, request: Request) -> Reply:
    """``GET``: whether the server needs a key and who is signed in (never 401: the dashboard
    asks before anything else); ``POST {"key": ...}``: sign in; ``DELETE``: sign out."""
    port = server_port(request.scope)
    name = cookie_name(request.headers, port)
    secure = request.scope.get("scheme") == "https"
    if request.method == "GET":
        try:
            principal = await app.authenticate(request)
        except Unauthenticated:
            return 200, {"required": True, "signed_in": False}, []
        return 200, {"required": principal is not ANONYMOUS, **_who(principal)}, []
    if request.method == "DELETE":
        await app.authenticate(request)  # a session's sign-out carries its CSRF header
        await trio.to_thread.run_sync(app.auth.sign_out, request.headers, port)
        return 200, {"required": True, "signed_in": False}, [
            (b"set-cookie", clear_cookie(name, secure))]
    key = (await _object(app, request)).get("key")
    if not isinstance(key, str) or not key.strip():
        raise QueryError('sign in with {"key": "<api key>"}')
    token, principal = await trio.to_thread.run_sync(app.auth.sign_in, key.strip(),
                                                     request.address)
    return 200, {"required": True, **_who(principal)}, [
        (b"set-cookie", set_cookie(name, token, secure))]


async def create(app: App, request: Request) -> Reply:
    body = await _object(app, request)

    def work() -> dict[str, Any]:
        key, record = create_key(app.store, request.principal, workspaces=body.get("workspaces"),
                                 role=body.get("role"), name=body.get("name") or "",
                                 expires_s=body.get("expires_s"))
        return {"key": key, **key_json(record, time.time_ns())}

    return 200, await trio.to_thread.run_sync(work), []


async def listing(app: App, request: Request) -> Reply:
    await app.read_json(request)
    records = await trio.to_thread.run_sync(list_keys, app.store, request.principal)
    now = time.time_ns()
    return 200, {"keys": [key_json(r, now) for r in records]}, []


async def revoke(app: App, request: Request) -> Reply:
    prefix = (await _object(app, request)).get("prefix")
    if not isinstance(prefix, str):
        raise QueryError('\'prefix\' is the key\'s prefix: {"prefix": "1a2b3c4d"}')
    record = await trio.to_thread.run_sync(revoke_key, app.store, request.principal, prefix)
    return 200, key_json(record, time.time_ns()), []

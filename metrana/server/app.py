"""The ASGI application of ``metrana serve``: the ingestion protocol (``POST /v1/runs``,
``POST /v1/runs:update``), the read API (``POST /api/query/<route>``, :mod:`.read_api`, with
the documented ``GET /api/runs…`` as aliases of its routes), the dashboard's sign-in
(``/api/session``), key management (``/api/keys/…``) and the dashboard's files.

Every request first passes :class:`~.guard.RequestGuard` (its ``Host``; for a write, its
``Origin`` and ``Content-Type``): GET and HEAD routes must therefore never change anything.
Then it is authenticated (:class:`~.auth.Authenticator`: 401, 429) and checked against what its
route needs (:mod:`.access`: 403). Routes are one table, :data:`ENDPOINTS` (the read API's own
table behind two of them): each declares its methods and its :class:`~.access.Need`, so a new
route cannot forget its authorization.

Kept framework-free on purpose: a handful of routes do not need a router, and every byte of the
request path is ours to measure. The loop only moves bytes: parsing, storing and reading run in
worker threads, and writes one request at a time (``INGEST_CONCURRENCY``), so the loop stays
free to answer reads while clients ingest.
"""

from __future__ import annotations

import hmac
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import attrs
import orjson
import trio
from loguru import logger

from . import read_api
from .access import ANONYMOUS, CREATE_RUNS, LOG, MANAGE_KEYS, Need, Principal
from .auth import Authenticator
from .errors import (
    Conflict,
    Forbidden,
    NotFound,
    QueryError,
    Throttled,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)
from .grpc_ingest import GrpcIngest
from .guard import SAFE_METHODS, RequestGuard
from .keys_admin import create_key, key_json, list_keys, revoke_key
from .protobuf_v06 import PACKAGE, descriptor
from .read_api import alias
from .sessions import CSRF_HEADER, clear_cookie, cookie_name, set_cookie
from .static_files import StaticFiles
from .store import Binary, Store
from .store.views import dumps
from .throttle import FailureLimiter
from .validate import ValidationError, compile_message


def _loads(data: bytes) -> Any:
    return orjson.loads(data)


__all__ = ["ALIASES", "DEFAULT_MAX_BODY_BYTES", "ENDPOINTS", "QUERY_PREFIX", "TABLES", "Endpoint",
           "IngestApp", "RouteTable"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# A body's JSON objects and arrays, counted before anything is built from it: a client's request
# holds about one per point (10,000 at most), so this is generous, and it bounds the memory a
# small gzip body that expands into millions of empty objects could take.
DEFAULT_MAX_ELEMENTS = 500_000
INGEST_CONCURRENCY = 1  # requests parsed and stored at once; more wait (bounded memory)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Reply = tuple[int, Any, Headers]  # status, payload (JSON-able, bytes of JSON, Binary), headers


@attrs.frozen
class Endpoint:
    """One path of the app: the methods it answers, what it needs of the caller (None: it
    authenticates by itself: the sign-in), and the :class:`IngestApp` method answering it."""

    methods: tuple[str, ...]
    need: Need | None
    answer: str


# Every path the app answers but the read API's (below) and the dashboard's files.
ENDPOINTS: dict[str, Endpoint] = {
    "/v1/runs": Endpoint(("POST",), CREATE_RUNS, "_create_run"),
    "/v1/runs:update": Endpoint(("POST",), LOG, "_update_runs"),
    "/api/session": Endpoint(("GET", "POST", "DELETE"), None, "_session"),
    "/api/keys/create": Endpoint(("POST",), MANAGE_KEYS, "_create_key"),
    "/api/keys/list": Endpoint(("POST",), MANAGE_KEYS, "_list_keys"),
    "/api/keys/revoke": Endpoint(("POST",), MANAGE_KEYS, "_revoke_key"),
}


@attrs.frozen
class RouteTable:
    """Routes under a path prefix, ``POST <prefix><route>`` with a JSON body: a module's own
    table (``routes``), what each route needs (``need_of``), and its ``answer``, which checks
    that need for the principal before the route runs. ``writes``: its routes change runs, so
    they run one at a time with ingestion."""

    routes: Mapping[str, object]
    need_of: Callable[[str], Need]
    answer: Callable[[Store, str, Any, Principal], bytes | Binary]
    writes: bool = False


QUERY_PREFIX = "/api/query/"
TABLES: dict[str, RouteTable] = {
    QUERY_PREFIX: RouteTable(read_api.ROUTES, read_api.need_of, read_api.answer),
}
# GET /api/runs… are aliases of the read API's routes (read_api.alias), with their needs.
ALIASES = "/api/runs"

# HTTP/JSON is the 0.6.x protocol (session_id); gRPC (.grpc_ingest) is 0.7.
_parse_create = compile_message(descriptor(f"{PACKAGE}.svc.CreateRunRequest"))
_parse_update = compile_message(descriptor(f"{PACKAGE}.svc.UpdateRunsRequest"))


class HTTPError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after


_REASONS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    411: "LENGTH_REQUIRED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "UNPROCESSABLE",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error(status: int, message: str) -> dict[str, Any]:
    return {"code": status, "status": _REASONS.get(status, "ERROR"), "message": message}


class IngestApp:
    """ASGI app over one :class:`Store`.

    ``api_key``: the server's own key (``METRANA_SERVER_API_KEY``), an admin key of every
    workspace; keys made with ``metrana keys create`` are in the store. ``auth_failures``:
    failed authentications an address may make per minute before 429.
    """

    def __init__(
        self,
        store: Store,
        *,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        guard: RequestGuard | None = None,
        auth_failures: FailureLimiter | None = None,
    ) -> None:
        self.store = store
        self._guard = guard if guard is not None else RequestGuard()  # loopback names only
        self.auth = Authenticator(store, api_key, limiter=auth_failures)
        self._max_body = max_body_bytes
        self._max_elements = max_elements
        self._ingest = trio.CapacityLimiter(INGEST_CONCURRENCY)
        self._static = StaticFiles()  # the dashboard, served without the key (it is only code)
        # The official client's gRPC (metrana-protobuf 0.7), on this same port.
        self._grpc = GrpcIngest(store, limiter=self._ingest, auth=self.auth,
                                max_message_bytes=max_body_bytes)

    def __repr__(self) -> str:  # never show a key
        return f"IngestApp(db={self.store.location!r}, {self.auth!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        refusal = self._guard.check(scope["method"], scope["headers"])  # before anything else
        if refusal is not None:
            if GrpcIngest.handles(scope) and scope.get("http_version") == "2":
                await GrpcIngest.refuse(send, refusal.message)
                return
            body = dumps(_error(refusal.status, refusal.message))
            await send({"type": "http.response.start", "status": refusal.status, "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if GrpcIngest.handles(scope):
            await self._grpc(scope, receive, send)
            return
        if scope["path"] in self._static:
            status, headers, static_body = self._static.response(
                scope["method"], scope["path"], {k.lower(): v for k, v in scope["headers"]})
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": static_body})
            return
        extra: Headers = []
        try:
            status, payload, extra = await self._route(scope, receive)
        except HTTPError as exc:
            status, payload = exc.status, _error(exc.status, exc.message)
            if exc.retry_after is not None:
                extra.append((b"retry-after", str(exc.retry_after).encode()))
            if exc.status == 401:
                extra.append((b"www-authenticate", b'Bearer realm="metrana"'))
        except Exception as exc:  # noqa: BLE001 - a bug of ours, not the client's: say so
            logger.opt(exception=exc).error("metrana serve: internal error on {} {}",
                                            scope.get("method"), scope.get("path"))
            status, payload = 500, _error(500, f"internal server error ({type(exc).__name__}); "
                                               "this is a bug in metrana serve")
        content_type = b"application/json"
        if isinstance(payload, Binary):  # metrana.query's points: JSON and raw columns
            payload, content_type = payload.body, Binary.content_type.encode()
        body = payload if isinstance(payload, bytes) else dumps(payload)  # bytes: encoded already
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _route(self, scope: Scope, receive: Receive) -> Reply:
        try:
            return await self._dispatch(scope, receive)
        except Unauthenticated as exc:
            raise HTTPError(401, str(exc)) from None
        except Forbidden as exc:
            raise HTTPError(403, str(exc)) from None
        except Throttled as exc:
            raise HTTPError(429, str(exc), retry_after=exc.retry_after) from None
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
        except NotFound as exc:
            raise HTTPError(404, str(exc)) from None
        except Unprocessable as exc:
            raise HTTPError(422, str(exc)) from None
        except QueryError as exc:
            raise HTTPError(400, str(exc)) from None
        except Unavailable as exc:
            # Rolled back, nothing stored: the client retries (5xx), after a second.
            logger.warning("metrana serve: {}", exc)
            raise HTTPError(503, f"{exc}; nothing was stored, retry", retry_after=1) from None

    async def _dispatch(self, scope: Scope, receive: Receive) -> Reply:
        headers = {k.lower(): v for k, v in scope["headers"]}
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        request = _Request(scope, headers, receive, method, path)
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None:
            if method not in endpoint.methods:
                raise HTTPError(405, f"{path} accepts {' or '.join(endpoint.methods)} only")
            if endpoint.need is not None:
                request.who = await self._authenticate(request)
                if endpoint.need.workspaces is None:  # nothing in the body to wait for
                    request.principal.require(endpoint.need, None)
            handler: Callable[[_Request], Awaitable[Reply]] = getattr(self, endpoint.answer)
            return await handler(request)
        for prefix, table in TABLES.items():  # JSON bodies (metrana.query: filters are trees)
            if not path.startswith(prefix):
                continue
            if method != "POST":
                raise HTTPError(405, f"{path} accepts POST only")
            principal = await self._authenticate(request)
            body = _parse_json(await self._read_body(headers, receive))
            work = partial(table.answer, self.store, path.removeprefix(prefix), body, principal)
            if not table.writes:
                return 200, await trio.to_thread.run_sync(work), []
            async with self._ingest:  # one write at a time, as ingestion
                return 200, await trio.to_thread.run_sync(work), []
        if path == ALIASES or path.startswith(ALIASES + "/"):  # aliases of query routes
            if method != "GET":
                raise HTTPError(405, f"{path} accepts GET only")
            principal = await self._authenticate(request)
            route, query = alias(path, scope.get("query_string", b""))
            return 200, await trio.to_thread.run_sync(read_api.answer, self.store, route, query,
                                                      principal), []
        raise HTTPError(404, f"no route {method} {path}")

    async def _authenticate(self, request: _Request) -> Principal:
        """Who the request speaks for (401, 429 otherwise); a change the dashboard's session
        cookie authenticates must carry the session's CSRF header (403 otherwise)."""
        address = _address(request.scope)
        principal = self.auth.quick(request.headers, address)
        if principal is None:
            server = request.scope.get("server")
            principal = await trio.to_thread.run_sync(
                self.auth.authenticate, request.headers, address, server[1] if server else None)
        if principal.csrf is not None and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, b"")
            if not hmac.compare_digest(sent, principal.csrf.encode()):
                raise Forbidden(f"{request.method} {request.path} came with the dashboard's "
                                "session cookie but without its X-Metrana-CSRF header: reload "
                                "the page")
        return principal

    # ---------------------------------------------------------------- ingestion

    async def _create_run(self, request: _Request) -> Reply:
        body = await self._read_body(request.headers, request.receive)
        return await self._store(self.store.create_run, _parse_create, body, "CreateRunRequest",
                                 CREATE_RUNS, request.principal)

    async def _update_runs(self, request: _Request) -> Reply:
        body = await self._read_body(request.headers, request.receive)
        return await self._store(self.store.update_runs, _parse_update, body,
                                 "UpdateRunsRequest", LOG, request.principal)

    # ---------------------------------------------------------- sign-in, keys

    async def _session(self, request: _Request) -> Reply:
        """``GET``: whether the server needs a key and who is signed in (never 401: the
        dashboard asks before anything else); ``POST {"key": ...}``: sign in; ``DELETE``:
        sign out."""
        server = request.scope.get("server")
        port = server[1] if server else None
        name = cookie_name(request.headers, port)
        secure = request.scope.get("scheme") == "https"
        if request.method == "GET":
            try:
                principal = await self._authenticate(request)
            except Unauthenticated:
                return 200, {"required": True, "signed_in": False}, []
            return 200, {"required": principal is not ANONYMOUS, **_who(principal)}, []
        if request.method == "DELETE":
            await self._authenticate(request)  # a session's sign-out carries its CSRF header
            await trio.to_thread.run_sync(self.auth.sign_out, request.headers, port)
            return 200, {"required": True, "signed_in": False}, [
                (b"set-cookie", clear_cookie(name, secure))]
        body = _parse_json(await self._read_body(request.headers, request.receive))
        key = body.get("key") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key.strip():
            raise HTTPError(400, 'sign in with {"key": "<api key>"}')
        token, principal = await trio.to_thread.run_sync(self.auth.sign_in, key.strip(),
                                                         _address(request.scope))
        return 200, {"required": True, **_who(principal)}, [
            (b"set-cookie", set_cookie(name, token, secure))]

    async def _create_key(self, request: _Request) -> Reply:
        body = _object(await self._read_body(request.headers, request.receive))
        expires = body.get("expires_s")

        def work() -> dict[str, Any]:
            key, record = create_key(self.store, request.principal, workspaces=body.get(
                "workspaces"), role=body.get("role"), name=body.get("name") or "",
                expires_s=expires)
            return {"key": key, **key_json(record, time.time_ns())}

        return 200, await trio.to_thread.run_sync(work), []

    async def _list_keys(self, request: _Request) -> Reply:
        await self._read_body(request.headers, request.receive)
        records = await trio.to_thread.run_sync(list_keys, self.store, request.principal)
        now = time.time_ns()
        return 200, {"keys": [key_json(r, now) for r in records]}, []

    async def _revoke_key(self, request: _Request) -> Reply:
        body = _object(await self._read_body(request.headers, request.receive))
        prefix = body.get("prefix")
        if not isinstance(prefix, str):
            raise HTTPError(400, '\'prefix\' is the key\'s prefix: {"prefix": "1a2b3c4d"}')
        record = await trio.to_thread.run_sync(revoke_key, self.store, request.principal,
                                               prefix)
        return 200, key_json(record, time.time_ns()), []

    async def _read_body(self, headers: dict[bytes, bytes], receive: Receive) -> bytes:
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise HTTPError(413, f"body of {int(declared)} bytes exceeds {self._max_body}")
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise HTTPError(413, f"body exceeds {self._max_body} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        data = b"".join(chunks)
        encoding = headers.get(b"content-encoding", b"identity").strip().lower()
        if encoding == b"gzip":
            data = self._gunzip(data)
        elif encoding not in (b"identity", b""):
            raise HTTPError(415, f"unsupported Content-Encoding {encoding.decode()!r}; use gzip")
        elements = data.count(b"{") + data.count(b"[")
        if elements > self._max_elements:
            raise HTTPError(413, f"body holds {elements:,} JSON objects and arrays, more than "
                                 f"{self._max_elements:,}; send fewer points per request")
        return data

    def _gunzip(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(data, self._max_body + 1)
        except zlib.error as exc:
            raise HTTPError(400, f"body is not valid gzip: {exc}") from None
        if len(out) > self._max_body or inflater.unconsumed_tail:
            raise HTTPError(413, f"decompressed body exceeds {self._max_body} bytes")
        if not inflater.eof:
            raise HTTPError(400, "gzip body is truncated")
        return out

    async def _store(self, write: Callable[[Any, str | None], object],
                     parse: Callable[[Any, str], Any], data: bytes, name: str, need: Need,
                     principal: Principal) -> Reply:
        # Parsing and storing run in a worker thread, at most INGEST_CONCURRENCY at a time:
        # the event loop stays free to answer reads (the dashboard) while clients ingest.
        def work() -> None:
            request = _parse(parse, data, name)
            principal.require(need, request)  # the workspaces are in the body
            write(request, principal.writer)

        async with self._ingest:
            await trio.to_thread.run_sync(work)
        return 200, {"operationId": str(uuid.uuid4())}, []


@attrs.define
class _Request:
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


def _address(scope: Scope) -> str:
    """The client's address, as failed authentications are counted and logged."""
    client = scope.get("client")
    return str(client[0]) if client else "an unknown address"


def _who(principal: Principal) -> dict[str, Any]:
    """Who is signed in, as ``/api/session`` says it (never the key itself)."""
    return {"signed_in": principal.csrf is not None, "key": principal.shown,
            "role": principal.role.word, "workspaces": sorted(principal.workspaces),
            "csrf": principal.csrf}


def _object(data: bytes) -> dict[str, Any]:
    body = _parse_json(data)
    if not isinstance(body, dict):
        raise HTTPError(400, "the body is a JSON object")
    return body


def _parse(parse: Callable[[Any, str], Any], data: bytes, name: str) -> Any:
    """JSON bytes to a validated request; every client mistake is a 4xx naming its path."""
    body = _parse_json(data)
    try:
        return parse(body, name)
    except ValidationError as exc:
        raise HTTPError(400, str(exc)) from None


def _parse_json(data: bytes) -> Any:
    try:
        return _loads(data)
    except ValueError as exc:
        raise HTTPError(400, f"body is not valid JSON: {exc}") from None

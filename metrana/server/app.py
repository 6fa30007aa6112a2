"""The ASGI application of ``metrana serve``: the ingestion protocol (``POST /v1/runs``,
``POST /v1/runs:update``), the read API (``POST /api/query/<route>``, :mod:`.read_api`, with
the documented ``GET /api/runs…`` as aliases of its routes), the changes to runs (``POST
/api/manage/<route>``, :mod:`.manage_api`), the dashboard's sign-in (``/api/session``), key
management (``/api/keys/…``) and the dashboard's files.

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
import uuid
import zlib
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import attrs
import orjson
import trio
from loguru import logger

from . import account_routes, manage_api, read_api
from .access import CREATE_RUNS, LOG, MANAGE_KEYS, Need, Principal
from .auth import Authenticator
from .errors import (
    Conflict,
    Forbidden,
    Gone,
    NotFound,
    QueryError,
    Throttled,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)
from .grpc_ingest import GrpcIngest
from .guard import SAFE_METHODS, RequestGuard
from .protobuf_v06 import PACKAGE, descriptor
from .read_api import alias
from .request import Receive, Reply, Request, Scope, server_port
from .sessions import CSRF_HEADER
from .static_files import StaticFiles
from .store import Binary, Store
from .store.views import dumps
from .throttle import FailureLimiter
from .validate import ValidationError, compile_message


def _loads(data: bytes) -> Any:
    return orjson.loads(data)


__all__ = ["ALIASES", "DEFAULT_MAX_BODY_BYTES", "ENDPOINTS", "MANAGE_PREFIX", "QUERY_PREFIX",
           "TABLES", "Endpoint", "IngestApp", "RouteTable"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# A body's JSON objects and arrays, counted before anything is built from it: a client's request
# holds about one per point (10,000 at most), so this is generous, and it bounds the memory a
# small gzip body that expands into millions of empty objects could take.
DEFAULT_MAX_ELEMENTS = 500_000
INGEST_CONCURRENCY = 1  # requests parsed and stored at once; more wait (bounded memory)

Send = Callable[[dict[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


@attrs.frozen
class Endpoint:
    """One path of the app: the methods it answers, what it needs of the caller (None: it
    authenticates by itself: the sign-in), and the function answering it (of the app and the
    request)."""

    methods: tuple[str, ...]
    need: Need | None
    answer: Callable[[Any, Request], Awaitable[Reply]]


async def _create_run(app: IngestApp, request: Request) -> Reply:
    return await app.store_request(request, app.store.create_run, _parse_create,
                                   "CreateRunRequest", CREATE_RUNS)


async def _update_runs(app: IngestApp, request: Request) -> Reply:
    return await app.store_request(request, app.store.update_runs, _parse_update,
                                   "UpdateRunsRequest", LOG)


# Every path the app answers but the read API's (below) and the dashboard's files.
ENDPOINTS: dict[str, Endpoint] = {
    "/v1/runs": Endpoint(("POST",), CREATE_RUNS, _create_run),
    "/v1/runs:update": Endpoint(("POST",), LOG, _update_runs),
    "/api/session": Endpoint(("GET", "POST", "DELETE"), None, account_routes.session),
    "/api/keys/create": Endpoint(("POST",), MANAGE_KEYS, account_routes.create),
    "/api/keys/list": Endpoint(("POST",), MANAGE_KEYS, account_routes.listing),
    "/api/keys/revoke": Endpoint(("POST",), MANAGE_KEYS, account_routes.revoke),
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
MANAGE_PREFIX = "/api/manage/"  # delete, rename, tags and notes: writes
TABLES: dict[str, RouteTable] = {
    QUERY_PREFIX: RouteTable(read_api.ROUTES, read_api.need_of, read_api.answer),
    MANAGE_PREFIX: RouteTable(manage_api.ROUTES, manage_api.need_of, manage_api.answer,
                              writes=True),
}
# GET /api/runs… are aliases of the read API's routes (read_api.alias), with their needs.
ALIASES = "/api/runs"

# HTTP/JSON is the 0.6.x protocol (session_id); gRPC (.grpc_ingest) is 0.7.
_parse_create = compile_message(descriptor(f"{PACKAGE}.svc.CreateRunRequest"))
_parse_update = compile_message(descriptor(f"{PACKAGE}.svc.UpdateRunsRequest"))


class HTTPError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None,
                 fields: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.fields = fields or {}  # added to the error body (a 409's orchestration id)


_REASONS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    429: "RESOURCE_EXHAUSTED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    410: "GONE",
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
            status, payload = exc.status, {**_error(exc.status, exc.message), **exc.fields}
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
            raise HTTPError(409, str(exc), fields={
                "orchestrationIdentifier": exc.orchestration_id}) from None
        except Gone as exc:
            raise HTTPError(410, str(exc)) from None
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
        request = Request(scope, headers, receive, method, path)
        endpoint = ENDPOINTS.get(path)
        if endpoint is not None:
            if method not in endpoint.methods:
                raise HTTPError(405, f"{path} accepts {' or '.join(endpoint.methods)} only")
            if endpoint.need is not None:
                request.who = await self.authenticate(request)
                if endpoint.need.workspaces is None:  # nothing in the body to wait for
                    request.principal.require(endpoint.need, None)
            return await endpoint.answer(self, request)
        for prefix, table in TABLES.items():  # JSON bodies (metrana.query: filters are trees)
            if not path.startswith(prefix):
                continue
            if method != "POST":
                raise HTTPError(405, f"{path} accepts POST only")
            principal = await self.authenticate(request)
            body = await self.read_json(request)
            work = partial(table.answer, self.store, path.removeprefix(prefix), body, principal)
            if not table.writes:
                return 200, await trio.to_thread.run_sync(work), []
            async with self._ingest:  # one write at a time, as ingestion
                return 200, await trio.to_thread.run_sync(work), []
        if path == ALIASES or path.startswith(ALIASES + "/"):  # aliases of query routes
            if method != "GET":
                raise HTTPError(405, f"{path} accepts GET only")
            principal = await self.authenticate(request)
            route, query = alias(path, scope.get("query_string", b""))
            return 200, await trio.to_thread.run_sync(read_api.answer, self.store, route, query,
                                                      principal), []
        raise HTTPError(404, f"no route {method} {path}")

    async def authenticate(self, request: Request) -> Principal:
        """Who the request speaks for (401, 429 otherwise); a change the dashboard's session
        cookie authenticates must carry the session's CSRF header (403 otherwise)."""
        principal = self.auth.quick(request.headers, request.address)
        if principal is None:
            principal = await trio.to_thread.run_sync(
                self.auth.authenticate, request.headers, request.address,
                server_port(request.scope))
        if principal.csrf is not None and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER, b"")
            if not hmac.compare_digest(sent, principal.csrf.encode()):
                raise Forbidden(f"{request.method} {request.path} came with the dashboard's "
                                "session cookie but without its X-Metrana-CSRF header: reload "
                                "the page")
        return principal

    async def read_json(self, request: Request) -> Any:
        """The request's body (bounded), parsed as JSON (400 otherwise)."""
        return _parse_json(await self._read_body(request.headers, request.receive))

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

    async def store_request(self, request: Request, write: Callable[[Any, str | None], object],
                            parse: Callable[[Any, str], Any], name: str, need: Need) -> Reply:
        """Parse an ingestion request, check ``need`` against the workspaces it names, and
        store it with its principal as the writer."""
        data = await self._read_body(request.headers, request.receive)
        principal = request.principal

        # Parsing and storing run in a worker thread, at most INGEST_CONCURRENCY at a time:
        # the event loop stays free to answer reads (the dashboard) while clients ingest.
        def work() -> None:
            request = _parse(parse, data, name)
            principal.require(need, request)  # the workspaces are in the body
            write(request, principal.writer)

        async with self._ingest:
            await trio.to_thread.run_sync(work)
        return 200, {"operationId": str(uuid.uuid4())}, []


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

"""The ASGI application of ``metrana serve``: the ingestion protocol (``POST /v1/runs``,
``POST /v1/runs:update``), the read API (``POST /api/query/<route>``, :mod:`.read_api`, with
the documented ``GET /api/runs…`` as aliases of its routes), the changes to runs (``POST
/api/manage/<route>``, :mod:`.manage_api`) and the dashboard's files.

Every request first passes :class:`~.guard.RequestGuard` (its ``Host``; for a write, its
``Origin`` and ``Content-Type``): GET and HEAD routes must therefore never change anything.

Kept framework-free on purpose: a handful of routes do not need a router, and every byte of the
request path is ours to measure. The loop only moves bytes: parsing, storing and reading run in
worker threads, and writes one request at a time (``INGEST_CONCURRENCY``), so the loop stays
free to answer reads while clients ingest.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import trio
from loguru import logger

from .auth import key_problem
from .errors import Conflict, Gone, NotFound, QueryError, Unavailable, Unprocessable
from .grpc_ingest import GrpcIngest
from .guard import RequestGuard
from .manage_api import answer as manage_answer
from .protobuf_v06 import PACKAGE, descriptor
from .read_api import alias, answer
from .static_files import StaticFiles
from .store import Binary, Store
from .store.views import dumps
from .validate import ValidationError, compile_message


def _loads(data: bytes) -> Any:
    return orjson.loads(data)


__all__ = ["DEFAULT_MAX_BODY_BYTES", "IngestApp"]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
# A body's JSON objects and arrays, counted before anything is built from it: a client's request
# holds about one per point (10,000 at most), so this is generous, and it bounds the memory a
# small gzip body that expands into millions of empty objects could take.
DEFAULT_MAX_ELEMENTS = 500_000
INGEST_CONCURRENCY = 1  # requests parsed and stored at once; more wait (bounded memory)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

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
    """ASGI app over one :class:`Store`."""

    def __init__(
        self,
        store: Store,
        *,
        api_key: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
        guard: RequestGuard | None = None,
    ) -> None:
        self.store = store
        self._guard = guard if guard is not None else RequestGuard()  # loopback names only
        self._api_key = api_key.encode() if api_key else None
        self._max_body = max_body_bytes
        self._max_elements = max_elements
        self._ingest = trio.CapacityLimiter(INGEST_CONCURRENCY)
        self._static = StaticFiles()  # the dashboard, served without the key (it is only code)
        # The official client's gRPC (metrana-protobuf 0.7), on this same port.
        self._grpc = GrpcIngest(store, limiter=self._ingest, api_key=self._api_key,
                                max_message_bytes=max_body_bytes)

    def __repr__(self) -> str:  # never show the key
        return f"IngestApp(db={self.store.location!r}, auth={'on' if self._api_key else 'off'})"

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
        extra: list[tuple[bytes, bytes]] = []
        try:
            status, payload = await self._route(scope, receive)
        except HTTPError as exc:
            status, payload = exc.status, _error(exc.status, exc.message)
            if exc.retry_after is not None:
                extra.append((b"retry-after", str(exc.retry_after).encode()))
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

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        try:
            return await self._dispatch(scope, receive)
        except Conflict as exc:
            raise HTTPError(409, str(exc)) from None
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

    async def _dispatch(self, scope: Scope, receive: Receive) -> tuple[int, Any]:
        headers = {k.lower(): v for k, v in scope["headers"]}
        self._authorize(headers)
        method = scope["method"]
        raw_path = scope.get("raw_path") or scope["path"].encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        if path == "/v1/runs" or path == "/v1/runs:update":
            if method != "POST":
                raise HTTPError(405, f"{path} accepts POST only")
            body = await self._read_body(headers, receive)
            if path == "/v1/runs":
                return await self._store(self.store.create_run, _parse_create, body,
                                         "CreateRunRequest")
            return await self._store(self.store.update_runs, _parse_update, body,
                                     "UpdateRunsRequest")
        if path.startswith("/api/query/"):  # metrana.query: JSON bodies (filters are trees)
            if method != "POST":
                raise HTTPError(405, f"{path} accepts POST only")
            body = await self._read_body(headers, receive)
            return 200, await trio.to_thread.run_sync(
                answer, self.store, path.removeprefix("/api/query/"), _parse_json(body))
        if path.startswith("/api/manage/"):  # delete, rename, tags and notes: writes
            if method != "POST":
                raise HTTPError(405, f"{path} accepts POST only")
            body = await self._read_body(headers, receive)
            async with self._ingest:  # one write at a time, as ingestion
                return 200, await trio.to_thread.run_sync(
                    manage_answer, self.store, path.removeprefix("/api/manage/"),
                    _parse_json(body))
        if path == "/api/runs" or path.startswith("/api/runs/"):  # aliases of query routes
            if method != "GET":
                raise HTTPError(405, f"{path} accepts GET only")
            route, query = alias(path, scope.get("query_string", b""))
            return 200, await trio.to_thread.run_sync(answer, self.store, route, query)
        raise HTTPError(404, f"no route {method} {path}")

    def _authorize(self, headers: dict[bytes, bytes]) -> None:
        reason = key_problem(headers, self._api_key)
        if reason is not None:
            raise HTTPError(401, f"{reason} API key: send 'Authorization: Bearer <api key>'")

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

    async def _store(self, write: Callable[[Any], object], parse: Callable[[Any, str], Any],
                     data: bytes, name: str) -> tuple[int, Any]:
        # Parsing and storing run in a worker thread, at most INGEST_CONCURRENCY at a time:
        # the event loop stays free to answer reads (the dashboard) while clients ingest.
        def work() -> None:
            write(_parse(parse, data, name))

        async with self._ingest:
            await trio.to_thread.run_sync(work)
        return 200, {"operationId": str(uuid.uuid4())}


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

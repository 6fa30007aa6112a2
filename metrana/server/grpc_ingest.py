"""gRPC ingestion: the ``IngestService`` of ``metrana-protobuf`` 0.7, as the official client
(``metrana`` 1.11, its Rust engine) speaks it, on the same port as the HTTP/JSON API.

gRPC is HTTP/2 (hypercorn serves cleartext HTTP/2 to a client that starts with it) with
length-prefixed protobuf messages and the status in trailers (the ASGI
``http.response.trailers`` extension). :class:`GrpcIngest` answers every request whose
content type is ``application/grpc``; the app hands those over before its own routing.

What the client does, and what we answer (measured against the real client):

1. ``InitializeRunLogging``: create the run, or find it (the client decides whether it may
   resume, from ``created`` and the run's orchestration identifier, kept as the run attribute
   ``sys/orchestration_id``); stream back the run's token, each series' last step, each
   environment's last rl_step and episode, and each RL metric's declaration.
2. ``UpdateRunStream``: the first message names the run by token; then each update
   (declarations, point batches, attributes, ``close_run``) is stored, in one transaction,
   before its response is sent, in order. The logger session is the store's session, so an
   update resent after a reconnect (same ``logger_session_id``, same steps) is stored once.
   Histograms and scatter plots are stored as over HTTP/JSON (:mod:`.value_ingest`: a bad one
   is INVALID_ARGUMENT naming the field). Environment attributes become run attributes under
   ``env/<environment_id>/`` (:func:`.grpc_codec.env_attributes`).
3. ``CheckOpStatuses``: every operation we acknowledged is stored (writes are synchronous).

Errors are statuses with a message, never a hang: a database that went away is UNAVAILABLE
(the client retries), a request we cannot store is INVALID_ARGUMENT naming what.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from typing import Any

import trio
from google.protobuf import json_format
from loguru import logger
from metrana_protobuf.ingestion.v1.svc import api_pb2

from .access import CREATE_RUNS, LOG, Principal
from .auth import Authenticator
from .errors import (
    Conflict,
    Forbidden,
    NotFound,
    Throttled,
    Unauthenticated,
    Unavailable,
    Unprocessable,
)
from .grpc_codec import (
    SERVICE,
    Declarations,
    FrameReader,
    GrpcError,
    RlBase,
    Status,
    convert_update,
    frame,
    init_responses,
    labels_text,
    parse,
    run_token,
    trailers,
    writer_name,
)
from .ingest import RunKey
from .request import client_address, server_port
from .store import Store
from .store.write import ORCHESTRATION_PATH

__all__ = ["ORCHESTRATION_PATH", "GrpcIngest"]

ALREADY_EXISTS = 6
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class GrpcIngest:
    """The ``IngestService`` over one :class:`Store`; an ASGI callable for gRPC requests."""

    def __init__(self, store: Store, *, limiter: trio.CapacityLimiter, auth: Authenticator,
                 max_message_bytes: int) -> None:
        self.store = store
        self._limiter = limiter  # shared with HTTP/JSON ingest: one write at a time
        self._auth = auth  # shared with HTTP/JSON: the same keys, scopes and failure limits
        self._max = max_message_bytes
        self._tokens: dict[bytes, RunKey] = {}
        # Create-or-resume is one decision per run: two processes of one job starting together
        # must not both see "not created" before the first wrote its orchestration identifier.
        self._init_lock = trio.Lock()

    @staticmethod
    def handles(scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name.lower() == b"content-type":
                return bool(value.lower().startswith(b"application/grpc"))
        return False

    @staticmethod
    async def refuse(send: Send, message: str) -> None:
        """End a call the server does not serve (a foreign Host or Origin: see ``.guard``)
        with PERMISSION_DENIED and why, as a gRPC client shows it (not an HTTP 403)."""
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/grpc")]})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "more_trailers": False,
                    "headers": trailers(Status.PERMISSION_DENIED, message)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = {k.lower(): v for k, v in scope["headers"]}
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"application/grpc"),
                                (b"grpc-accept-encoding", b"identity,gzip")]})
        method = scope["path"].rpartition("/")[2]
        code, message = Status.OK, ""
        try:
            if scope.get("http_version") != "2":
                raise GrpcError(Status.UNIMPLEMENTED, "gRPC needs HTTP/2")
            principal = await self._authenticate(scope, headers)
            handler = self._methods().get(method)
            if scope["path"] != f"/{SERVICE}/{method}" or handler is None:
                raise GrpcError(Status.UNIMPLEMENTED, f"no method {scope['path']} here; this "
                                f"server implements {SERVICE} of metrana-protobuf 0.7")
            encoding = headers.get(b"grpc-encoding", b"identity").decode("latin-1").strip()
            messages = _messages(receive, FrameReader(self._max, encoding))
            await handler(principal, messages, partial(_send_message, send))
        except GrpcError as exc:
            code, message = exc.code, exc.message
        except Unauthenticated as exc:
            code, message = Status.UNAUTHENTICATED, str(exc)
        except Forbidden as exc:
            code, message = Status.PERMISSION_DENIED, str(exc)
        except Throttled as exc:
            code, message = Status.RESOURCE_EXHAUSTED, str(exc)
        except Unavailable as exc:
            logger.warning("metrana serve: {}", exc)
            code, message = Status.UNAVAILABLE, f"{exc}; nothing of this update was stored, retry"
        except NotFound as exc:
            code, message = Status.NOT_FOUND, str(exc)
        except Unprocessable as exc:
            code, message = Status.INVALID_ARGUMENT, str(exc)
        except _Disconnected:
            return
        except Exception as exc:  # noqa: BLE001 - a bug of ours, not the client's: say so
            logger.opt(exception=exc).error("metrana serve: internal error in gRPC {}", method)
            code, message = Status.INTERNAL, (f"internal server error ({type(exc).__name__}); "
                                              "this is a bug in metrana serve")
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        await send({"type": "http.response.trailers", "headers": trailers(code, message),
                    "more_trailers": False})

    def _methods(self) -> dict[str, Callable[[Principal, AsyncIterator[bytes], _Sender],
                                              Awaitable[None]]]:
        unimplemented = partial(_unimplemented, "agent traces are not stored by metrana serve")
        return {
            "InitializeRunLogging": self._initialize_run_logging,
            "UpdateRunStream": self._update_run_stream,
            "CreateRun": self._create_run,
            "UpdateRuns": self._update_runs,
            "CheckOpStatuses": self._check_op_statuses,
            "UpdateTraces": unimplemented,
            "UpdateTracesStream": unimplemented,
        }

    async def _authenticate(self, scope: Scope, headers: dict[bytes, bytes]) -> Principal:
        """Who the call speaks for, as an HTTP/JSON request's (``authorization`` metadata)."""
        address = client_address(scope)
        principal = self._auth.quick(headers, address)
        if principal is None:
            principal = await trio.to_thread.run_sync(self._auth.authenticate, headers, address,
                                                      server_port(scope))
        return principal

    # ------------------------------------------------------------------ runs

    async def _initialize_run_logging(self, principal: Principal,
                                      messages: AsyncIterator[bytes], send: _Sender) -> None:
        request = parse(api_pb2.InitializeRunLoggingRequest, await _one(messages))
        principal.require_in(CREATE_RUNS, [request.run.workspace])
        if request.run.HasField("fork_point") and request.run.fork_point.parent_run_name:
            raise GrpcError(Status.UNIMPLEMENTED, "forking a run (fork_from_run) is not "
                            "supported by metrana serve")
        async with self._init_lock, self._limiter:
            responses = await trio.to_thread.run_sync(self._initialize, request,
                                                       principal.writer)
        for response in responses:
            await send(response)

    def _initialize(self, request: Any, writer: str | None) -> list[Any]:
        key = _run_key(request.run)
        try:
            # The orchestration id is stored with the run, in its transaction (as over HTTP).
            self.store.create_run(_create_request(request), writer)
            created = True
        except Conflict:
            created = False
        run = self.store.get_run(key.workspace, key.project, key.run_name)
        token = run_token(key.workspace, key.project, key.run_name, int(run["created_ns"]))
        self._tokens[token] = key
        orchestration = run["attributes"].get(ORCHESTRATION_PATH, {}).get("value", "")
        return init_responses(run, token, created, str(orchestration), writer_name(request.logger_id))

    async def _create_run(self, principal: Principal, messages: AsyncIterator[bytes],
                          send: _Sender) -> None:
        request = parse(api_pb2.CreateRunRequest, await _one(messages))
        _run_key(request.run)
        principal.require_in(CREATE_RUNS, [request.run.workspace])
        try:
            async with self._limiter:
                await trio.to_thread.run_sync(self.store.create_run, _create_request(request),
                                              principal.writer)
        except Conflict as exc:
            raise GrpcError(ALREADY_EXISTS, str(exc)) from None
        await send(api_pb2.CreateRunResponse(operation_id=str(uuid.uuid4())))

    async def _check_op_statuses(self, principal: Principal, messages: AsyncIterator[bytes],
                                 send: _Sender) -> None:
        request = parse(api_pb2.CheckOpStatusesRequest, await _one(messages))
        # Every operation id we hand out is acknowledged only once it is committed.
        await send(api_pb2.CheckOpStatusesResponse(
            operation_statuses={op: True for op in request.operation_ids}))

    def _resolve(self, token: bytes) -> RunKey:
        key = self._tokens.get(token)
        if key is None:  # a client that outlived a restart of this server: look it up
            for run in self.store.list_runs():
                self._tokens[run_token(run["workspace"], run["project"], run["run"],
                                       int(run["created_ns"]))] = RunKey(
                    run["workspace"], run["project"], run["run"])
            key = self._tokens.get(token)
        if key is None:
            raise GrpcError(Status.NOT_FOUND, "this run_id names no run of this server's "
                            f"database ({self.store.location}); initialize the run again")
        return key

    # ------------------------------------------------------------------ updates

    async def _update_run_stream(self, principal: Principal, messages: AsyncIterator[bytes],
                                 send: _Sender) -> None:
        declarations = Declarations("")
        run: RunKey | None = None
        token = b""
        rl_base: RlBase | None = None
        async for data in messages:
            request = parse(api_pb2.UpdateRunRequest, data)
            if run is None or (request.run_id and request.run_id != token):
                if not request.run_id:
                    raise GrpcError(Status.INVALID_ARGUMENT,
                                    "the stream's first message must carry run_id")
                token = request.run_id
                if not declarations.writer:  # the stream's process, named by its first message
                    declarations.writer = writer_name(request.logger_id,
                                                      request.logger_session_id)
                run = await trio.to_thread.run_sync(self._resolve, token)
                principal.require_in(LOG, [run.workspace])
                rl_base = RlBase(_StoredRl(self.store, run))
            assert rl_base is not None
            async with self._limiter:
                await trio.to_thread.run_sync(self._store_update, run, request, declarations,
                                              rl_base, principal.writer)
            await send(api_pb2.UpdateRunResponse(operation_id=str(uuid.uuid4())))

    def _store_update(self, run: RunKey, request: Any, declarations: Declarations,
                      rl_base: RlBase, writer: str | None) -> None:
        update = convert_update(run, request, declarations, rl_base)
        # Stored even when it carries nothing (declarations only): every message says its
        # logger session is alive (the run's running/crashed state, store.liveness).
        self.store.update_runs(update, writer)

    async def _update_runs(self, principal: Principal, messages: AsyncIterator[bytes],
                           send: _Sender) -> None:
        request = parse(api_pb2.UpdateRunsRequest, await _one(messages))
        principal.require_in(LOG, [update.workspace for update in request.run_updates])
        for update in request.run_updates:
            if update.series or update.rl_series:
                raise GrpcError(Status.UNIMPLEMENTED, "UpdateRuns with series/rl_series (points "
                                "named in full) is not supported by metrana serve: send "
                                "series_declarations with streaming_series/streaming_rl_series, "
                                "or use UpdateRunStream")
        for update in request.run_updates:
            key = _run_key(update)
            shim = _StreamingShape(update, request.logger_session_id)
            async with self._limiter:
                await trio.to_thread.run_sync(self._store_update, key, shim,
                                              Declarations(writer_name(
                                                  request.logger_id, request.logger_session_id)),
                                              RlBase(_StoredRl(self.store, key)),
                                              principal.writer)
        await send(api_pb2.UpdateRunsResponse(operation_id=str(uuid.uuid4())))


_Sender = Callable[[Any], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away mid-call: nothing to answer."""


class _StoredRl:
    """:class:`RlBase`'s view of the database: a series' first flat minor step at an rl_step,
    and its last point. The run's series are read once per stream."""

    def __init__(self, store: Store, run: RunKey) -> None:
        self._store = store
        self._run = run
        self._series: dict[tuple[Any, ...], dict[str, Any]] | None = None

    def __call__(self, key: tuple[Any, ...], rl_step: int) -> tuple[int | None,
                                                                    tuple[int, int] | None]:
        if self._series is None:
            run = self._store.get_run(self._run.workspace, self._run.project, self._run.run_name)
            self._series = {
                (s["metric_name"], s["scale"], labels_text(s["labels"]), s["environment_id"],
                 s["episode"]): s for s in run["series"] if s["kind"] == "rl"}
        series = self._series.get(key)
        if series is None or series["last_point"] is None:
            return None, None
        last = (int(series["last_point"]["step"]), int(series["last_point"]["minor_step"]))
        points = self._store.get_points(series["id"], rl_step, rl_step)
        first = min((int(p["minor_step"]) for p in points), default=None)
        return first, last


class _StreamingShape:
    """An ``UpdateRunsRequest.RunUpdate`` read as the ``UpdateRunRequest`` the stream sends."""

    def __init__(self, update: Any, session: int) -> None:
        self._update = update
        self.logger_session_id = session
        self.series = update.streaming_series
        self.rl_series = update.streaming_rl_series
        self.series_declarations = update.series_declarations
        self.attributes = update.attributes
        self.histogram_series = update.histogram_series
        self.scatter_series = update.scatter_series
        self.env_attr_updates = update.env_attr_updates

    def HasField(self, name: str) -> bool:  # noqa: N802 - protobuf's spelling
        return bool(self._update.HasField(name))


def _run_key(run: Any) -> RunKey:
    key = RunKey(run.workspace, run.project, run.run_name)
    for name, value in (("workspace", key.workspace), ("project", key.project),
                        ("run_name", key.run_name)):
        if not value:
            raise GrpcError(Status.INVALID_ARGUMENT, f"run.{name} must not be empty")
    return key


def _names(key: RunKey) -> dict[str, str]:
    return {"workspace": key.workspace, "project": key.project, "run_name": key.run_name}


def _create_request(request: Any) -> dict[str, Any]:
    run = {**_names(_run_key(request.run)), "experiment": request.run.experiment or None,
           "orchestration_identifier": request.run.orchestration_identifier}
    rules = [json_format.MessageToDict(rule, preserving_proto_field_name=True,
                                       use_integers_for_enums=True)
             for rule in request.aggregation_rules]
    return {"run": run, "create_project_if_missing": request.create_project_if_missing,
            "aggregation_rules": rules}


async def _messages(receive: Receive, reader: FrameReader) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        for data in reader.feed(message.get("body", b"")):
            yield data
        if not message.get("more_body", False):
            reader.finish()
            return


async def _one(messages: AsyncIterator[bytes]) -> bytes:
    found = [data async for data in messages]
    if len(found) != 1:
        raise GrpcError(Status.INVALID_ARGUMENT,
                        f"a unary call carries one message; this one carried {len(found)}")
    return found[0]


async def _send_message(send: Send, message: Any) -> None:
    await send({"type": "http.response.body", "body": frame(message), "more_body": True})


async def _unimplemented(reason: str, principal: Principal, messages: AsyncIterator[bytes],
                         send: _Sender) -> None:
    raise GrpcError(Status.UNIMPLEMENTED, reason)

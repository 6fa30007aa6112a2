"""The client's HTTP: every request the logger, its actors and ``metrana sync`` send to the
ingestion service goes through here.

One owner for how a request is built and sent (:func:`make_client`, :func:`post`), what a
failure means and how it is said (:func:`describe_failure`, :func:`is_definite`,
:func:`is_transient`), how long to keep trying (:class:`RetryPolicy`,
:func:`post_with_retries`), what a parcel of points looks like on the wire
(:class:`RunTarget`, :func:`encode_parcel`), a refusal as the error a user reads
(:func:`refusal_error`), and the run's close (:func:`send_close`). The actors decide *when*
to send and what a refusal means for their points; none of them speaks HTTP itself.
(The read side, ``metrana.query`` and the CLI, has its own: :mod:`metrana._read_transport`.)
"""

from __future__ import annotations

import email.utils
import errno
import random
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import httpx
import trio

from ._actors.parcel import InFlight, Parcel
from ._auth_refusal import auth_refusal
from ._closing_backend import close_cancelled_handshakes
from ._exceptions import MetranaApiError, MetranaConnectionError
from ._scheme import PLAIN_HTTP_SERVER, answered_in_plain_http
from ._stats import Counters
from ._wire import JSON_HEADERS, encode_update, series_header, wire_group

__all__ = [
    "NO_ANSWER",
    "RetryPolicy",
    "RunTarget",
    "describe_failure",
    "encode_parcel",
    "is_definite",
    "is_transient",
    "make_client",
    "post",
    "post_with_retries",
    "refusal_error",
    "send_close",
    "url_of",
]

USER_AGENT = "metrana-python"
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def make_client(base_url: str, api_key: str | None, *, connections: int | None = None,
                transport: httpx.AsyncBaseTransport | None = None,
                timeout: httpx.Timeout | float = TIMEOUT,
                ) -> httpx.AsyncClient:
    """The client every request of one run (or one ``metrana sync`` run) goes through.

    Built in the caller's thread (during ``init()``), not the engine's: building the first
    client imports httpcore and h11 and may load the CA bundle (~0.1 s of CPU), which on the
    engine thread would compete for the interpreter with the first ``log()`` calls. A plain
    ``http://`` service never uses TLS, so no CA bundle is read for it (redirects are not
    followed, so the connection cannot become TLS later). ``connections``: the most open at
    once (a lane each and one for the rest); None leaves httpx's default.
    """
    headers = {"User-Agent": USER_AGENT}
    if api_key is not None:
        headers["Authorization"] = f"Bearer {api_key}"
    limits = (httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
              if connections is not None else httpx.Limits())
    client = httpx.AsyncClient(
        base_url=base_url, headers=headers, transport=transport, timeout=timeout,
        limits=limits, verify=not base_url.lower().startswith("http://"),
    )
    close_cancelled_handshakes(client)  # see metrana/_closing_backend.py
    return client


class _Body(httpx.AsyncByteStream):
    """A request body sent in one piece, by a plain iterator. httpx hands ``content=bytes``
    to the connection as an async generator; a request cancelled while its body is written
    (close spooling what is left, a probe's time limit) leaves that generator unfinished, and
    trio warns when it is collected. An iterator leaves nothing to finalize."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return _Once(self._body)


class _Once:
    def __init__(self, chunk: bytes) -> None:
        self._chunk: bytes | None = chunk

    def __aiter__(self) -> _Once:
        return self

    async def __anext__(self) -> bytes:
        chunk, self._chunk = self._chunk, None
        if chunk is None:
            raise StopAsyncIteration
        return chunk


async def post(client: httpx.AsyncClient, url: str, body: bytes,
               headers: dict[str, str]) -> httpx.Response:
    """One POST of ``body`` (see :class:`_Body` for why not ``client.post``)."""
    request = client.build_request("POST", url, content=body, headers=headers)
    request.stream = _Body(body)
    return await client.send(request)


@attrs.frozen
class RetryPolicy:
    """Exponential backoff with jitter; ``Retry-After`` is honoured up to ``max_retry_after``."""

    initial: float = 0.1
    multiplier: float = 1.5
    max_delay: float = 30.0
    max_attempts: int = 15
    max_retry_after: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_delay, self.initial * self.multiplier ** attempt)
        delay = base / 2 + random.uniform(0, base / 2)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay


# 501 Not Implemented and 505 HTTP Version Not Supported will answer the same way every time.
_PERMANENT_5XX = (501, 505)


def is_transient(status: int) -> bool:
    return status in (408, 429) or (status >= 500 and status not in _PERMANENT_5XX)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, its causes, and what exception groups among them hold."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        todo += list(getattr(current, "exceptions", ()) or ())
        for nxt in (current.__cause__, current.__context__):
            if nxt is not None:
                todo.append(nxt)
    return seen


NO_ANSWER = "the server closed the connection without an HTTP answer"


def describe_failure(exc: httpx.TransportError) -> str:
    """What went wrong on the wire, in words a user can act on."""
    causes = _causes(exc)
    if isinstance(exc, httpx.ConnectError) and answered_in_plain_http(causes):
        return PLAIN_HTTP_SERVER  # https:// to a plain-HTTP port (see metrana._scheme)
    if (any(isinstance(c, (ConnectionResetError, BrokenPipeError)) for c in causes)
            or "without sending a response" in str(exc)):
        return NO_ANSWER  # the run creator then asks whether the port speaks TLS
    if any(isinstance(c, ConnectionRefusedError) for c in causes):
        return "connection refused"
    if any(isinstance(c, socket.gaierror) for c in causes):
        return "host name not found"
    if isinstance(exc, httpx.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out waiting for an answer"
    text = str(exc)
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({text})" if text else "cannot connect"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_NO_ROUTE = (errno.EHOSTUNREACH, errno.ENETUNREACH)


def is_definite(exc: httpx.TransportError) -> bool:
    """True when the failure is a definite answer that nothing is there: connection refused
    (nothing listens), no route to the host, or a host name that does not resolve.

    Anything else — a timeout, a reset, a dropped connection — may be a service that is there
    but slow or busy, and is retried as before. A definite answer is not worth waiting out:
    the caller spools at once and probes in the background instead (see
    :func:`post_with_retries`'s ``give_up_if_definite``). Only called on a failure, never on
    the path of a request that succeeds.
    """
    if not isinstance(exc, httpx.ConnectError):
        return False
    return any(isinstance(c, (ConnectionRefusedError, socket.gaierror))
               or (isinstance(c, OSError) and c.errno in _NO_ROUTE) for c in _causes(exc))


def url_of(client: httpx.AsyncClient, path: str) -> str:
    return str(client.base_url).rstrip("/") + path


async def post_with_retries(
    client: httpx.AsyncClient,
    path: str,
    body: bytes,
    policy: RetryPolicy,
    counters: Counters,
    *,
    headers: dict[str, str] | None = None,
    flight: InFlight | None = None,
    on_failure: Callable[[int, str, bool], None] | None = None,
    give_up_if_definite: bool = False,
) -> httpx.Response:
    """POST until a non-transient answer. Raises MetranaConnectionError when the budget is spent.

    Returns the response whether it was accepted or refused; callers decide what a refusal
    means. Transient = connection errors, timeouts, 408, 429, 5xx. ``flight.outstanding`` is
    True exactly while a request is on the wire; ``on_failure(attempt, reason, unreachable)``
    hears of every failed attempt (``unreachable``: nothing answered at all).
    ``give_up_if_definite``: raise at the first definite refusal (:func:`is_definite`), with
    ``definite=True``, instead of retrying it — for callers that keep the points safe anyway.
    """
    last = ""
    unreachable = False
    for attempt in range(policy.max_attempts):
        retry_after = None
        counters.requests += 1
        # Left set if the request is cancelled on the wire: its points are then in doubt.
        if flight is not None:
            flight.outstanding = True
        try:
            response = await post(client, path, body, headers or JSON_HEADERS)
        except httpx.TransportError as exc:
            if flight is not None:
                flight.outstanding = False
            last = describe_failure(exc)
            unreachable = isinstance(exc, httpx.ConnectError)
            if give_up_if_definite and is_definite(exc):
                if on_failure is not None:
                    on_failure(attempt, last, unreachable)
                raise MetranaConnectionError(f"cannot reach {url_of(client, path)}: {last}",
                                             unreachable=True, definite=True) from None
        else:
            if flight is not None:
                flight.outstanding = False
            if not is_transient(response.status_code):
                return response
            last = f"HTTP {response.status_code}"
            unreachable = False
            retry_after = _retry_after(response)
        if on_failure is not None:
            on_failure(attempt, last, unreachable)
        if attempt + 1 < policy.max_attempts:
            counters.retries += 1
            await trio.sleep(policy.delay(attempt, retry_after))
    raise MetranaConnectionError(
        f"{url_of(client, path)} did not accept the request after {policy.max_attempts} "
        f"attempts (last: {last})", unreachable=unreachable,
    )


@attrs.define
class RunTarget:
    session_id: int
    workspace: str
    project: str
    run_name: str


def encode_parcel(target: RunTarget, parcel: Parcel, headers: dict[Any, str]) -> bytes:
    """An UpdateRunsRequest carrying a parcel's points; ``headers`` caches each series' JSON
    head (name, labels, ordering), which never changes, by series object."""
    series = []
    for state, spans in parcel:
        header = headers.get(state)
        if header is None:
            header = headers[state] = series_header(state.key, state.manual)
        series.append((header, wire_group(state.key), spans))
    return encode_update(target.session_id, target.workspace, target.project, target.run_name,
                         series)


def refusal_error(count: int, response: httpx.Response, what: str = "points") -> MetranaApiError:
    refused = auth_refusal(response)  # a key refused or out of its scope: say which
    return MetranaApiError(
        f"the service refused {count:,} {what}: {refused}" if refused is not None else
        f"the service refused {count:,} {what} with HTTP {response.status_code}: "
        f"{response.text[:500]}",
        status=response.status_code, body=response.text[:2000], points=count,
    )


async def send_close(client: httpx.AsyncClient, target: RunTarget, policy: RetryPolicy,
                     counters: Counters, *, give_up_if_definite: bool = False) -> httpx.Response:
    """Tell the service the session ``target.session_id`` is done (``closeRun``; session 0:
    the whole run, every session of it), so a dashboard shows the run finished. Carries no
    points; raises :class:`MetranaConnectionError` as :func:`post_with_retries` does."""
    body = encode_update(target.session_id, target.workspace, target.project, target.run_name,
                         (), close_run=True)
    return await post_with_retries(client, "/runs:update", body, policy, counters,
                                   give_up_if_definite=give_up_if_definite)

"""Dispatcher: encodes a lane's batches and POSTs them, one after another, with retries."""

from __future__ import annotations

import email.utils
import gzip
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import attrs
import httpx
import trio

from .._exceptions import MetranaApiError, MetranaConnectionError
from .._stats import Counters
from .._wire import encode_update, series_header
from .batcher import Batch
from .error_collector import ErrorCollector
from .flush import FlushMarker

__all__ = ["Dispatcher", "RetryPolicy", "is_transient", "post_with_retries"]


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


def is_transient(status: int) -> bool:
    return status in (408, 429) or status >= 500


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


async def post_with_retries(
    client: httpx.AsyncClient,
    path: str,
    body: bytes,
    policy: RetryPolicy,
    counters: Counters,
    *,
    headers: dict[str, str] | None = None,
    accept: Callable[[int], bool] = lambda status: 200 <= status < 300,
    on_retry: Callable[[str], Awaitable[None] | None] | None = None,
) -> httpx.Response:
    """POST until a non-transient answer. Raises MetranaConnectionError when the budget is spent.

    Returns the response whether it was accepted or refused; callers decide what a refusal
    means. Transient = connection errors, timeouts, 408, 429, 5xx.
    """
    last = ""
    for attempt in range(policy.max_attempts):
        retry_after = None
        counters.requests += 1
        try:
            response = await client.post(path, content=body, headers=headers)
        except httpx.TransportError as exc:
            last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        else:
            if accept(response.status_code) or not is_transient(response.status_code):
                return response
            last = f"HTTP {response.status_code}"
            retry_after = _retry_after(response)
        if attempt + 1 < policy.max_attempts:
            counters.retries += 1
            await trio.sleep(policy.delay(attempt, retry_after))
    raise MetranaConnectionError(
        f"{str(client.base_url).rstrip('/')}{path} did not accept the request after {policy.max_attempts} "
        f"attempts (last: {last})"
    )


@attrs.define
class RunTarget:
    session_id: int
    workspace: str
    project: str
    run_name: str


class DispatchControl(Protocol):
    """What a dispatcher needs from the engine that owns it."""

    discard_queued: bool  # CompletePending's "drop what is still queued"

    @property
    def spool_only(self) -> bool: ...  # offline, an outage, or a close out of time: to disk

    def can_spool(self) -> bool: ...

    def spool_batch(self, batch: Batch) -> None: ...

    def enter_outage(self, reason: str) -> None: ...

    async def wait_sendable(self) -> None: ...


class Dispatcher:
    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[Any],
        client: httpx.AsyncClient,
        target: RunTarget,
        errors: ErrorCollector,
        counters: Counters,
        policy: RetryPolicy,
        control: DispatchControl,
    ) -> None:
        self._receive = receive
        self._client = client
        self._target = target
        self._errors = errors
        self._counters = counters
        self._policy = policy
        self._control = control
        self.request_scope: trio.CancelScope | None = None
        self.compress = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._receive:
            task_status.started()
            async for item in self._receive:
                if type(item) is FlushMarker:
                    item.ack()  # every earlier batch of this lane is settled
                    continue
                if self._control.discard_queued:
                    continue  # counted as discarded when the engine settles its books
                await self._control.wait_sendable()
                await self.send(item)

    def encode(self, batch: Batch) -> bytes:
        target = self._target
        series = []
        for state, runs in batch.series.items():
            if state.header is None:
                state.header = series_header(state.key, state.manual)
            series.append((state.header, state.key.rl, runs))
        return encode_update(
            target.session_id, target.workspace, target.project, target.run_name, series
        )

    async def send(self, batch: Batch) -> None:
        control = self._control
        if control.spool_only:
            control.spool_batch(batch)
            return
        body = self.encode(batch)
        headers = {"Content-Type": "application/json"}
        if self.compress:
            # Level 1: most of gzip's saving on this repetitive JSON for a fraction of its CPU.
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        response = None
        with trio.CancelScope() as scope:
            self.request_scope = scope
            try:
                response = await post_with_retries(
                    self._client, "/runs:update", body, self._policy, self._counters,
                    headers=headers,
                )
            except MetranaConnectionError as exc:
                if control.can_spool():
                    # Later batches of this lane queue behind this one on disk: order holds.
                    control.enter_outage(str(exc))
                    control.spool_batch(batch)
                    return
                self._counters.failed += batch.count
                self._errors.report(
                    MetranaConnectionError(f"{batch.count:,} points not delivered: {exc}",
                                           points=batch.count)
                )
                return
            finally:
                self.request_scope = None
        if response is None:
            # The engine cancelled this request to spool everything (close ran out of time).
            control.spool_batch(batch)
            return
        if 200 <= response.status_code < 300:
            self._counters.sent += batch.count
            return
        self._counters.rejected += batch.count
        self._errors.report(
            MetranaApiError(
                f"the service refused {batch.count:,} points with HTTP {response.status_code}: "
                f"{response.text[:500]}",
                status=response.status_code,
                body=response.text[:2000],
                points=batch.count,
            )
        )

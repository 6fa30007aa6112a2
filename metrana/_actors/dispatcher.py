"""Dispatcher: encodes a lane's batches and POSTs them, one after another, with retries.

How a request is sent, retried and encoded is :mod:`metrana._transport`'s; this actor decides
what a lane sends when, merges what queued up, and keeps what cannot be delivered.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import trio

from .._delivery import Delivery
from .._exceptions import MetranaConnectionError
from .._run_spool import RunSpool
from .._stats import Counters
from .._transport import RetryPolicy, RunTarget, encode_parcel, post_with_retries, refusal_error
from .._wire import JSON_HEADERS
from .batcher import MAX_BATCH_POINTS, Batch, ToLane
from .error_collector import ErrorCollector
from .flush import FlushMarker
from .parcel import InFlight, Parcel, Progress, deliver_isolating, parcel_count

__all__ = ["Dispatcher"]


class Dispatcher:
    def __init__(
        self,
        receive: trio.MemoryReceiveChannel[ToLane],
        client: httpx.AsyncClient,
        target: RunTarget,
        errors: ErrorCollector,
        counters: Counters,
        policy: RetryPolicy,
        delivery: Delivery,
        spool: RunSpool,
        *,
        compress: bool = False,
    ) -> None:
        self._receive = receive
        self._client = client
        self._target = target
        self._errors = errors
        self._counters = counters
        self._policy = policy
        self._delivery = delivery
        self._spool = spool
        self._compress = compress
        self.request_scope: trio.CancelScope | None = None
        self._headers: dict[Any, str] = {}

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with self._receive:
            task_status.started()
            carry: ToLane | None = None
            while True:
                if carry is not None:
                    item, carry = carry, None
                else:
                    try:
                        item = await self._receive.receive()
                    except trio.EndOfChannel:
                        return
                if type(item) is FlushMarker:
                    item.ack()  # every earlier batch of this lane is settled
                    continue
                if self._delivery.discard_queued:
                    continue  # counted as discarded when the engine settles its books
                await self._delivery.wait_sendable()
                item, carry = self._merge_queued(item)
                await self.send(item)

    def _merge_queued(self, batch: Batch) -> tuple[Batch, ToLane | None]:
        """Batches that queued up behind this one (the service is slower than the batch age),
        merged into one request of up to MAX_BATCH_POINTS: a backlog drains in big requests
        instead of many small ones. Returns the merged batch and what did not fit, if any."""
        merged: dict[Any, list[Any]] | None = None
        count, weight = batch.count, batch.weight
        while weight < MAX_BATCH_POINTS:
            try:
                following = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if type(following) is FlushMarker or weight + following.weight > MAX_BATCH_POINTS:
                return self._merged(batch, merged, count, weight), following
            if merged is None:
                merged = {state: list(spans) for state, spans in batch.parcel}
            for state, spans in following.parcel:
                merged.setdefault(state, []).extend(spans)
            count += following.count
            weight += following.weight
        return self._merged(batch, merged, count, weight), None

    @staticmethod
    def _merged(batch: Batch, merged: dict[Any, list[Any]] | None, count: int,
                weight: int) -> Batch:
        return batch if merged is None else Batch(list(merged.items()), count, weight)

    def encode(self, batch: Batch) -> bytes:
        return encode_parcel(self._target, batch.parcel, self._headers)

    async def _post(self, parcel: Parcel, flight: InFlight) -> httpx.Response:
        body = encode_parcel(self._target, parcel, self._headers)
        headers = JSON_HEADERS
        if self._compress:
            # Level 1: most of gzip's saving on this repetitive JSON for a fraction of its CPU.
            body = gzip.compress(body, compresslevel=1)
            headers = {**JSON_HEADERS, "Content-Encoding": "gzip"}
        # With a spool, a refused connection is not retried: the points go to disk at once
        # and Recovery probes in the background; without one, retrying is all that keeps them.
        return await post_with_retries(self._client, "/runs:update", body, self._policy,
                                       self._counters, headers=headers, flight=flight,
                                       give_up_if_definite=self._spool.enabled)

    def _sent(self, count: int) -> None:
        self._counters.sent += count
        self._delivery.contacted()

    def _refused(self, count: int, response: httpx.Response) -> None:
        self._counters.rejected += count
        self._delivery.contacted()
        self._errors.report(refusal_error(count, response))

    async def send(self, batch: Batch) -> None:
        delivery, spool = self._delivery, self._spool
        if delivery.spool_only:
            spool.write([batch.parcel], batch.count)
            return
        progress = Progress()
        try:
            with trio.CancelScope() as scope:
                self.request_scope = scope  # the engine cancels it to spool everything now
                try:
                    await deliver_isolating(batch.parcel, self._post, progress,
                                            on_sent=self._sent, on_refused=self._refused,
                                            stop=lambda: delivery.spool_only)
                finally:
                    self.request_scope = None
        except trio.Cancelled:
            # The whole dispatch was cancelled (an Immediate close, a close timeout with no
            # spool): a request on the wire may or may not have been stored. What was never
            # sent is counted as discarded when the engine settles.
            if progress.flight.outstanding:
                self._counters.in_doubt += progress.current_count
            raise
        rest = progress.remaining()
        if not rest:
            return
        count = sum(parcel_count(part) for part in rest)
        if progress.error is not None and not spool.enabled:
            self._counters.failed += count
            self._errors.report(MetranaConnectionError(
                f"{count:,} points not delivered: {progress.error}", points=count))
            return
        if progress.error is not None:
            # Later batches of this lane queue behind these on disk: order holds.
            delivery.enter_outage(str(progress.error))
        # Unreachable, or the engine cut the request off to spool everything (close ran out
        # of time): a request cut off in flight may have been stored; the replay of the same
        # session is idempotent on the server.
        spool.write(rest, count)

"""Replaying spooled points, for the Recovery actor of a running logger and ``metrana sync``.

Segments are replayed oldest first; consecutive records of one session are merged into
full-size requests (up to 10,000 points), whose series are spread over the lanes and sent
concurrently — each series in one lane, its requests one after another, so per-series order
holds. A segment is deleted only once every record in it was answered, so a crash mid-replay
re-sends at most one segment, which the server stores once (a session's replay is idempotent).

A refused request is split until the refused points are isolated (see :mod:`.parcel`); only
those count as rejected. A transient failure is handled by who is replaying:

- the Recovery actor (``persistent``) waits for the service, however long it is away — unless
  the service answers a probe while failing this one request over and over with 5xx: then the
  request is split like a refused one until the points it fails on are isolated; those are
  rejected and reported, and replay moves on;
- ``metrana sync`` stops at the first request it cannot deliver, keeps that segment and the
  ones after it, and reports the failure (a non-zero exit): it always terminates.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from .._exceptions import MetranaApiError, MetranaConnectionError, MetranaSpoolError
from .._series import SeriesKey
from .._spool import Damage, decode_record, lock_segment, read_segment, segments
from .._stats import Counters
from .._transport import (
    RetryPolicy,
    RunTarget,
    encode_parcel,
    is_transient,
    post_with_retries,
    refusal_error,
)
from .._wire import encode_update
from .batcher import MAX_BATCH_POINTS
from .parcel import SPLITTABLE, InFlight, Parcel, Progress, deliver_isolating

__all__ = ["Answer", "ReplayResult", "ask", "probe", "replay_directory"]

_SUSPECT_SPLITTABLE = SPLITTABLE | frozenset(range(500, 600))


@attrs.define
class ReplayResult:
    delivered: int = 0
    others: int = 0  # of them, points of other sessions (other processes, earlier runs)
    rejected: int = 0
    damaged: int = 0
    segments: int = 0
    skipped_in_use: int = 0
    stopped: MetranaConnectionError | None = None  # sync only: why it stopped early


@attrs.define(eq=False)
class SpooledSeries:
    """A series as a spool record names it; quacks like the StepCounter's SeriesState."""

    key: SeriesKey
    manual: bool


class Answer(enum.Enum):
    """What asking the service once (:func:`ask`) found."""

    ANSWERED = "answered"  # a non-transient answer: it is there and working
    REFUSED = "refused"  # a definite "nothing is there": refused, no route, unknown host
    NO_ANSWER = "no answer"  # anything else: a timeout, a 5xx — slow or busy, maybe away


async def ask(client: httpx.AsyncClient, target: RunTarget, policy: RetryPolicy) -> Answer:
    """Ask the service once, with an update that carries nothing."""
    body = encode_update(target.session_id, target.workspace, target.project, target.run_name, ())
    try:
        response = await post_with_retries(client, "/runs:update", body,
                                           attrs.evolve(policy, max_attempts=1), Counters(),
                                           give_up_if_definite=True)
    except MetranaConnectionError as exc:
        return Answer.REFUSED if exc.definite else Answer.NO_ANSWER
    return Answer.NO_ANSWER if is_transient(response.status_code) else Answer.ANSWERED


async def probe(client: httpx.AsyncClient, target: RunTarget, policy: RetryPolicy) -> bool:
    """True when the service answers a request (an update with nothing in it) at all."""
    return await ask(client, target, policy) is Answer.ANSWERED


def merge_records(records: list[tuple[int, list[Any]]], max_points: int = MAX_BATCH_POINTS
                  ) -> list[tuple[int, Parcel]]:
    """Consecutive records of one session as parcels of at most ``max_points`` points."""
    out: list[tuple[int, Parcel]] = []
    current: dict[tuple[Any, ...], tuple[SpooledSeries, list[Any]]] = {}
    current_session: int | None = None
    size = 0

    def close_current() -> None:
        nonlocal current, size
        if current:
            assert current_session is not None
            out.append((current_session, [(series, [(None, items)])
                                          for series, items in current.values()]))
        current, size = {}, 0

    for session, series_list in records:
        # A histogram or cloud fills more of a request than a scalar (see Batch.weight).
        count = sum(sum(point[2].weight for point in points) if key.kind else len(points)
                    for key, _, points in series_list)
        if session != current_session or size + count > max_points:
            close_current()
            current_session = session
        for key, manual, points in series_list:
            ident = (*key.identity, manual)
            entry = current.get(ident)
            if entry is None:
                entry = current[ident] = (SpooledSeries(key, manual), [])
            entry[1].extend((None, *point) for point in points)
        size += count
    close_current()
    return out


def spread(parcel: Parcel, lanes: int) -> list[Parcel]:
    """A parcel's series over at most ``lanes`` parcels (a series stays whole)."""
    groups: list[Parcel] = [[] for _ in range(max(1, min(lanes, len(parcel))))]
    for index, entry in enumerate(parcel):
        groups[index % len(groups)].append(entry)
    return [group for group in groups if group]


@attrs.define
class Replayer:
    client: httpx.AsyncClient
    target: RunTarget
    policy: RetryPolicy
    counters: Counters
    report: Callable[[BaseException], None]
    own_session: int | None = None
    persistent: bool = False
    lanes: int = 1
    result: ReplayResult = attrs.field(factory=ReplayResult)

    def _sent(self, session: int, count: int) -> None:
        self.result.delivered += count
        self.counters.replayed += count
        if session == self.own_session:
            self.counters.spooled -= count
            self.counters.sent += count
        else:
            self.result.others += count

    def _refused(self, session: int, count: int, error: MetranaApiError) -> None:
        self.result.rejected += count
        if session == self.own_session:
            self.counters.spooled -= count
            self.counters.rejected += count
        self.report(error)

    async def _deliver_lane(self, session: int, parcel: Parcel) -> MetranaConnectionError | None:
        """Deliver one lane's part; None when every point was answered."""
        target = attrs.evolve(self.target, session_id=session)
        last_status: list[int] = []
        short = attrs.evolve(self.policy, max_attempts=2)
        headers: dict[Any, str] = {}

        def heard(attempt: int, reason: str, unreachable: bool) -> None:
            last_status.append(0 if unreachable or not reason.startswith("HTTP ")
                               else int(reason[5:]))

        async def post(part: Parcel, flight: InFlight) -> httpx.Response:
            # sync stops at a refused connection at once; Recovery keeps probing, paced.
            return await post_with_retries(self.client, "/runs:update",
                                           encode_parcel(target, part, headers), self.policy,
                                           self.counters, flight=flight, on_failure=heard,
                                           give_up_if_definite=not self.persistent)

        async def post_suspect(part: Parcel, flight: InFlight) -> httpx.Response:
            # The service answers others but fails this request: a failure that persists
            # over two attempts counts as a refusal, so the bad points can be isolated.
            try:
                return await post_with_retries(self.client, "/runs:update",
                                               encode_parcel(target, part, headers), short,
                                               self.counters, flight=flight, on_failure=heard)
            except MetranaConnectionError:
                if last_status and last_status[-1] >= 500:
                    return httpx.Response(last_status[-1], text=(
                        f"the service failed on these points with HTTP {last_status[-1]} on "
                        "every attempt while answering other requests"))
                raise

        todo = [parcel]
        suspect = False
        while todo:
            part = todo.pop(0)
            progress = Progress()
            await deliver_isolating(
                part, post_suspect if suspect else post, progress,
                on_sent=lambda n: self._sent(session, n),
                on_refused=lambda n, r: self._refused(session, n,
                                                      refusal_error(n, r, "spooled points")),
                splittable=_SUSPECT_SPLITTABLE if suspect else SPLITTABLE,
            )
            if progress.error is None:
                continue
            todo = progress.remaining() + todo
            if not self.persistent:
                return progress.error
            # Poison, or is the service away? Ask it something else: if that is answered,
            # isolate the points it keeps failing on; if not, wait for it (the backoff inside
            # post_with_retries paces the probing).
            suspect = (bool(last_status) and last_status[-1] >= 500
                       and await probe(self.client, target, self.policy))
        return None

    async def deliver(self, session: int, parcel: Parcel) -> MetranaConnectionError | None:
        errors: list[MetranaConnectionError] = []

        async def lane(part: Parcel) -> None:
            error = await self._deliver_lane(session, part)
            if error is not None:
                errors.append(error)

        parts = spread(parcel, self.lanes)
        if len(parts) == 1:
            await lane(parts[0])
        else:
            async with trio.open_nursery() as nursery:
                for part in parts:
                    nursery.start_soon(lane, part)
        return errors[0] if errors else None

    async def replay_segment(self, segment: Path) -> bool:
        """Deliver one segment; True when every record was answered (it is then deleted)."""
        records: list[tuple[int, list[Any]]] = []
        for item in read_segment(segment):
            if isinstance(item, Damage):
                self.result.damaged += 1
                self.report(MetranaSpoolError(f"{item}; the intact records are delivered"))
                continue
            try:
                records.append(decode_record(item))
            except (ValueError, KeyError, TypeError) as exc:
                self.result.damaged += 1
                self.report(MetranaSpoolError(f"spool segment {segment} holds an unreadable "
                                              f"record ({exc!r}); skipped"))
        for session, parcel in merge_records(records):
            error = await self.deliver(session, parcel)
            if error is not None:
                self.result.stopped = error
                return False
        segment.unlink(missing_ok=True)
        self.result.segments += 1
        return True


async def replay_directory(
    client: httpx.AsyncClient,
    directory: Path,
    target: RunTarget,
    policy: RetryPolicy,
    counters: Counters,
    report: Callable[[BaseException], None],
    *,
    own_session: int | None = None,
    persistent: bool = False,
    lanes: int = 1,
) -> ReplayResult:
    """Deliver every complete segment of ``directory`` not held by a live writer.

    Each segment is locked while it is replayed, so two processes replaying one run's spool
    at once (a parent's close and a worker's recovery) never both take the same segment.
    """
    replayer = Replayer(client, target, policy, counters, report, own_session, persistent, lanes)
    for segment in segments(directory):
        lock = lock_segment(segment)
        if lock is None:
            replayer.result.skipped_in_use += 1
            continue
        try:
            if not segment.exists():
                continue  # replayed (and deleted) by another process before we locked it
            if not await replayer.replay_segment(segment):
                break
        finally:
            os.close(lock)
    return replayer.result

"""Recovery: replaying spooled points once the service answers again.

The same replay loop serves a running logger (its Recovery actor, which delivers the spool
before any newer point of the run) and ``metrana sync`` (which delivers spools left on disk).
Segments are replayed oldest first and deleted only once every record in them was answered,
so a crash mid-replay re-sends at most one segment, which the server stores once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import attrs
import httpx

from .._exceptions import MetranaApiError, MetranaConnectionError, MetranaSpoolError
from .._spool import Damage, decode_record, is_locked, read_segment, segments
from .._stats import Counters
from .._wire import encode_update, series_header
from .dispatcher import RetryPolicy, RunTarget, post_with_retries

__all__ = ["ReplayResult", "deliver", "replay_directory"]

_JSON = {"Content-Type": "application/json"}


@attrs.define
class ReplayResult:
    delivered: int = 0
    rejected: int = 0
    damaged: int = 0
    segments: int = 0
    skipped_in_use: int = 0


async def deliver(
    client: httpx.AsyncClient, path: str, body: bytes, policy: RetryPolicy, counters: Counters
) -> httpx.Response:
    """POST until the service gives a non-transient answer, however long it is away."""
    while True:
        try:
            return await post_with_retries(client, path, body, policy, counters, headers=_JSON)
        except MetranaConnectionError:
            continue  # the backoff inside post_with_retries paces the probing


async def replay_directory(
    client: httpx.AsyncClient,
    directory: Path,
    target: RunTarget,
    policy: RetryPolicy,
    counters: Counters,
    report: Callable[[BaseException], None],
    *,
    own_session: int | None = None,
) -> ReplayResult:
    """Deliver every complete segment of ``directory`` not held by a live writer."""
    result = ReplayResult()
    for segment in segments(directory):
        if is_locked(segment):
            result.skipped_in_use += 1
            continue
        for item in read_segment(segment):
            if isinstance(item, Damage):
                result.damaged += 1
                report(MetranaSpoolError(f"{item}; the intact records are delivered"))
                continue
            session, series = decode_record(item)
            count = sum(len(points) for _, _, points in series)
            body = encode_update(
                session, target.workspace, target.project, target.run_name,
                [(series_header(key, manual), key.rl, [(None, [(None, *p) for p in points])])
                 for key, manual, points in series],
            )
            response = await deliver(client, "/runs:update", body, policy, counters)
            own = session == own_session
            if 200 <= response.status_code < 300:
                result.delivered += count
                counters.replayed += count
                if own:
                    counters.spooled -= count
                    counters.sent += count
            else:
                result.rejected += count
                if own:
                    counters.spooled -= count
                    counters.rejected += count
                report(MetranaApiError(
                    f"the service refused {count:,} spooled points with HTTP "
                    f"{response.status_code}: {response.text[:500]}",
                    status=response.status_code, body=response.text[:2000], points=count))
        segment.unlink(missing_ok=True)
        result.segments += 1
    return result

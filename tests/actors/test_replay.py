"""Replay of the spool (the Recovery actor's and ``metrana sync``'s): order, merging, refusals.

Narrow tests on ``httpx.MockTransport`` (what each request carried, in which order) over real
spool files; the end-to-end claims are in tests/client/test_durability.py and
test_no_silent_loss.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import trio

from metrana._actors.dispatcher import RetryPolicy, RunTarget
from metrana._actors.replay import merge_records, replay_directory, spread
from metrana._series import SeriesKey
from metrana._spool import SpoolWriter, encode_record, segments
from metrana._stats import Counters

LOSS = SeriesKey(False, "loss", "ML_STEP", ())
ACC = SeriesKey(False, "acc", "ML_STEP", ())
TARGET = RunTarget(0, "ws", "proj", "run")
QUICK = RetryPolicy(initial=0.001, multiplier=1.0, max_delay=0.001, max_attempts=2)


def record(session: int, key: SeriesKey, values: range) -> bytes:
    return encode_record(session, [(key, False, [(i, None, float(i), 10**18 + i)
                                                 for i in values])])


def write_segments(directory: Path, segments_of_records: list[list[bytes]]) -> None:
    """Each inner list becomes one closed segment, in order (oldest first)."""
    writer = SpoolWriter(directory)
    for records in segments_of_records:
        for payload in records:
            writer.append(payload)
        writer.rotate()


def recorder(answer: Any = None) -> tuple[httpx.AsyncClient, list[dict[str, Any]]]:
    """A client whose service records every update body (and answers with ``answer(body)``)."""
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        status = answer(body) if answer is not None else 200
        return httpx.Response(status, json={"message": "refused"} if status >= 400 else {})

    return httpx.AsyncClient(base_url="http://svc/v1", transport=httpx.MockTransport(handler)), seen


def values_sent(bodies: list[dict[str, Any]], name: str = "loss") -> list[float]:
    return [p["floatValue"] for body in bodies for update in body["runUpdates"]
            for series in update.get("series", []) if series["metricName"] == name
            for p in series["points"]]


async def test_segments_are_replayed_oldest_first_and_records_in_order(tmp_path: Path) -> None:
    """Three segments of several records: the service sees every point in logging order."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 10)), record(1, LOSS, range(10, 20))],
                              [record(1, LOSS, range(20, 30))],
                              [record(1, LOSS, range(30, 35)), record(1, LOSS, range(35, 40))]])
    client, seen = recorder()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert values_sent(seen) == [float(i) for i in range(40)]
    assert (result.delivered, result.segments) == (40, 3) and segments(tmp_path) == []


async def test_records_of_one_session_merge_into_full_requests() -> None:
    """Consecutive records of one session make one request up to 10,000 points; a new session
    or the size limit starts another; series keep their points in order."""
    def decoded(session: int, key: SeriesKey, values: range) -> tuple[int, list[Any]]:
        return session, [(key, False, [(i, None, float(i), i) for i in values])]

    merged = merge_records([decoded(1, LOSS, range(0, 3000)), decoded(1, ACC, range(0, 3000)),
                            decoded(1, LOSS, range(3000, 6000)), decoded(1, LOSS, range(6000, 9000)),
                            decoded(2, LOSS, range(0, 5))])
    assert [(session, sum(len(runs[0][1]) for _, runs in parcel)) for session, parcel in merged] \
        == [(1, 9000), (1, 3000), (2, 5)]
    first = {series.key.name: [item[3] for item in runs[0][1]] for series, runs in merged[0][1]}
    assert first["loss"] == [float(i) for i in range(6000)] and len(first["acc"]) == 3000


def test_lanes_take_whole_series() -> None:
    """Spreading a parcel over lanes never splits a series (its points stay in one request)."""
    parcel: list[Any] = [(f"s{i}", [(None, [i])]) for i in range(5)]
    parts = spread(parcel, 2)
    assert sorted(s for part in parts for s, _ in part) == [f"s{i}" for i in range(5)]
    assert len(parts) == 2 and all(len(part) in (2, 3) for part in parts)


async def test_a_refused_point_is_isolated_and_the_rest_delivered(tmp_path: Path) -> None:
    """A 422 for any request holding the value 13: that point alone is rejected and reported."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 100))]])
    client, seen = recorder(lambda body: 422 if 13.0 in values_sent([body]) else 200)
    reported: list[BaseException] = []
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        reported.append)
    assert (result.delivered, result.rejected) == (99, 1)
    delivered = [v for body in seen if 13.0 not in values_sent([body])
                 for v in values_sent([body])]
    assert sorted(delivered) == [float(i) for i in range(100) if i != 13]
    assert len(reported) == 1 and "HTTP 422" in str(reported[0])


async def test_sync_stops_at_a_service_that_does_not_take_points(tmp_path: Path) -> None:
    """Not persistent (sync): the first request that keeps failing stops the replay, and its
    segment and the later ones stay on disk."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 10))], [record(1, LOSS, range(10, 20))]])
    before = segments(tmp_path)
    client, _ = recorder(lambda body: 503)
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert result.stopped is not None and "HTTP 503" in str(result.stopped)
    assert segments(tmp_path) == before and result.delivered == 0


async def test_recovery_isolates_what_the_service_fails_on_every_time(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """Persistent (Recovery): a request answered 500 every time while a probe (an empty update)
    succeeds is split until the failing point is alone; it is rejected, the rest delivered."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 64))]])
    client, _ = recorder(lambda body: 500 if 40.0 in values_sent([body]) else 200)
    reported: list[BaseException] = []
    counters = Counters()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, counters,
                                        reported.append, own_session=1, persistent=True)
    assert (result.delivered, result.rejected, counters.rejected) == (63, 1, 1)
    assert "HTTP 500" in str(reported[0])


async def test_points_of_the_own_session_move_from_spooled_to_sent(tmp_path: Path) -> None:
    """Counting: replayed points of this session leave `spooled` for `sent`; an earlier
    session's only count as `replayed`."""
    write_segments(tmp_path, [[record(7, LOSS, range(0, 5)), record(8, ACC, range(0, 3))]])
    counters = Counters(spooled=5)
    client, _ = recorder()
    async with client:
        await replay_directory(client, tmp_path, TARGET, QUICK, counters, lambda e: None,
                               own_session=7)
    assert (counters.spooled, counters.sent, counters.replayed) == (0, 5, 8)

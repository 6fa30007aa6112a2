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

from metrana._actors.replay import merge_records, probe, replay_directory, spread
from metrana._series import SeriesKey
from metrana._spool import SpoolWriter, encode_record, segments
from metrana._stats import Counters
from metrana._transport import RetryPolicy, RunTarget

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


def test_record_merging_stops_exactly_at_10000_points_and_keeps_manual_apart() -> None:
    def decoded(session: int, key: SeriesKey, values: range, manual: bool = False
                ) -> tuple[int, list[Any]]:
        return session, [(key, manual, [(i, None, float(i), i) for i in values])]

    merged = merge_records([decoded(1, LOSS, range(0, 6000)), decoded(1, LOSS, range(6000, 10_000)),
                            decoded(1, LOSS, range(10_000, 10_001))])
    assert [sum(len(runs[0][1]) for _, runs in parcel) for _, parcel in merged] == [10_000, 1]
    merged = merge_records([decoded(3, LOSS, range(0, 2)), decoded(3, LOSS, range(5, 7), True)])
    ((session, parcel),) = merged
    assert session == 3
    assert [(series.key.name, series.manual, [item[1] for item in runs[0][1]])
            for series, runs in parcel] == [("loss", False, [0, 1]), ("loss", True, [5, 6])]
    assert all(runs[0][0] is None for _, runs in parcel)  # spooled points carry their steps
    assert merge_records([]) == []


def test_series_are_dealt_to_lanes_in_turn() -> None:
    parcel: list[Any] = [(f"s{i}", []) for i in range(5)]
    assert [[s for s, _ in part] for part in spread(parcel, 2)] == [["s0", "s2", "s4"],
                                                                    ["s1", "s3"]]
    assert [[s for s, _ in part] for part in spread(parcel, 0)] == [[f"s{i}" for i in range(5)]]
    assert len(spread(parcel, 9)) == 5 and spread([], 4) == []


async def test_a_segment_held_by_a_live_writer_is_left_alone(tmp_path: Path) -> None:
    """A running logger's open segment is locked: replay skips it (and counts it), delivers
    the closed ones before and after it... and never deletes it."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 3))]])
    live = SpoolWriter(tmp_path)
    live.append(record(2, LOSS, range(0, 2)))  # open, not rotated: held
    client, seen = recorder()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert (result.delivered, result.segments, result.skipped_in_use) == (3, 1, 1)
    assert values_sent(seen) == [0.0, 1.0, 2.0] and len(segments(tmp_path)) == 1
    live.rotate()
    client, seen = recorder()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert (result.delivered, result.skipped_in_use) == (2, 0) and segments(tmp_path) == []


async def test_damaged_records_are_counted_and_said_and_the_rest_delivered(
        tmp_path: Path) -> None:
    """A record whose checksum fails and one that is not a record at all (valid checksum,
    unreadable JSON): both reported, both counted, the intact ones delivered, the segment
    deleted once every intact record was answered."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 2)), b"not json", b"{}",
                               record(1, LOSS, range(2, 4)), record(1, LOSS, range(4, 6))]])
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF  # inside the last record's payload
    segment.write_bytes(bytes(data))
    client, seen = recorder()
    reported: list[BaseException] = []
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        reported.append)
    assert (result.delivered, result.damaged, result.segments) == (4, 3, 1)
    assert values_sent(seen) == [0.0, 1.0, 2.0, 3.0] and segments(tmp_path) == []
    messages = [str(e) for e in reported]
    assert sum("unreadable record" in m for m in messages) == 2
    assert sum("checksum mismatch" in m and "the intact records are delivered" in m
               for m in messages) == 1


async def test_a_segment_is_deleted_only_once_all_of_it_was_answered(tmp_path: Path) -> None:
    """Two full requests' worth in one segment; the service takes the first and then fails:
    sync stops, the segment stays (its replay later is idempotent), later segments wait."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 10_000)),
                               record(1, LOSS, range(10_000, 12_000))],
                              [record(1, LOSS, range(12_000, 12_010))]])
    before = segments(tmp_path)
    client, seen = recorder(lambda body: 200 if len(values_sent([body])) == 10_000 else 503)
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert (result.delivered, result.segments) == (10_000, 0)
    assert result.stopped is not None and segments(tmp_path) == before


async def test_recovery_waits_for_a_service_that_is_away(tmp_path: Path,
                                                         autojump_clock: trio.abc.Clock) -> None:
    """Persistent (Recovery): 503 to everything for 100 s (probes too): nothing is given up,
    nothing is rejected; once it answers, everything is delivered in order."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 50))], [record(1, LOSS, range(50, 60))]])
    back = 100.0
    client, seen = recorder(lambda body: 503 if trio.current_time() < back else 200)
    counters = Counters(spooled=60)
    policy = RetryPolicy(initial=1, multiplier=1, max_delay=1, max_attempts=3)
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, policy, counters,
                                        lambda e: None, own_session=1, persistent=True)
    assert trio.current_time() >= back
    assert (result.delivered, result.rejected, result.stopped) == (60, 0, None)
    ok = [body for body in seen if values_sent([body])][-2:]
    assert values_sent(ok) == [float(i) for i in range(60)]
    assert (counters.spooled, counters.sent, counters.rejected) == (0, 60, 0)
    assert counters.requests == len([body for body in seen if values_sent([body])])  # not probes


async def test_refused_points_of_the_own_session_move_from_spooled_to_rejected(
        tmp_path: Path) -> None:
    write_segments(tmp_path, [[record(7, LOSS, range(0, 4)), record(8, ACC, range(0, 2))]])
    counters = Counters(spooled=4)
    client, _ = recorder(lambda body: 422)
    reported: list[BaseException] = []
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, counters,
                                        reported.append, own_session=7)
    assert (result.delivered, result.rejected) == (0, 6)
    assert (counters.spooled, counters.rejected, counters.sent, counters.replayed) == (0, 4, 0, 0)
    assert [str(e).split(":")[0] for e in reported] == [
        "the service refused 1 spooled points with HTTP 422"] * 6  # each isolated


async def test_lanes_send_series_concurrently_each_series_in_order(tmp_path: Path) -> None:
    """Over 3 lanes, every request holds whole series, and each series' points arrive in
    order (its requests one after another); all 5 series go out in one round."""
    keys = [SeriesKey(False, f"m{i}", "ML_STEP", ()) for i in range(5)]
    write_segments(tmp_path, [[encode_record(1, [(key, False, [(j, None, float(j), j)
                                                               for j in range(3)])
                                                 for key in keys])]])
    client, seen = recorder()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None, lanes=3)
    assert result.delivered == 15 and len(seen) == 3
    names = sorted(sorted(s["metricName"] for u in body["runUpdates"] for s in u["series"])
                   for body in seen)
    assert names == [["m0", "m3"], ["m1", "m4"], ["m2"]]
    for key in keys:
        assert values_sent(seen, key.name) == [0.0, 1.0, 2.0]


async def test_each_record_is_sent_as_its_own_session(tmp_path: Path) -> None:
    """A spool holds several sessions' points: each request names the session that logged
    them (the server keys points by it), not the replaying one."""
    write_segments(tmp_path, [[record(2**64 - 1, LOSS, range(0, 2)), record(5, LOSS, range(0, 1))]])
    client, seen = recorder()
    async with client:
        await replay_directory(client, tmp_path, TARGET, QUICK, Counters(), lambda e: None)
    assert [(body["sessionId"], values_sent([body])) for body in seen] == [
        (str(2**64 - 1), [0.0, 1.0]), ("5", [0.0])]
    assert {(u["workspace"], u["project"], u["runName"]) for body in seen
            for u in body["runUpdates"]} == {("ws", "proj", "run")}


async def test_probe_asks_once_and_tells_an_answer_from_a_failure() -> None:
    for answer, expected in ((200, True), (404, True), (422, True), (503, False), (429, False)):
        client, seen = recorder(lambda body, answer=answer: answer)
        async with client:
            assert await probe(client, TARGET, RetryPolicy()) is expected
        assert len(seen) == 1 and values_sent(seen) == []

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    async with httpx.AsyncClient(base_url="http://svc/v1",
                                 transport=httpx.MockTransport(refuse)) as client:
        assert await probe(client, TARGET, RetryPolicy()) is False



async def replay_scripted(tmp_path: Path, script: list[int]
                          ) -> tuple[list[str], Any, Counters, list[BaseException]]:
    """Persistent replay of one point against a service answering ``script`` in turn (0:
    connection refused; 200 once it runs out): what each request was and got, in order."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 1))]])
    log: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        kind = "points" if values_sent([json.loads(request.content)]) else "probe"
        status = script[len(log)] if len(log) < len(script) else 200
        log.append(f"{kind} {status}")
        if status == 0:
            raise httpx.ConnectError("refused")
        return httpx.Response(status, json={})

    counters = Counters(spooled=1)
    reported: list[BaseException] = []
    policy = RetryPolicy(initial=1, multiplier=1, max_delay=1, max_attempts=5)
    async with httpx.AsyncClient(base_url="http://svc/v1",
                                 transport=httpx.MockTransport(handler)) as client:
        with trio.fail_after(600):
            result = await replay_directory(client, tmp_path, TARGET, policy, counters,
                                            reported.append, own_session=1, persistent=True)
    return log, result, counters, reported


async def test_a_suspect_request_gets_exactly_two_attempts(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """A request failing with 500 on all 5 attempts while a probe is answered is a suspect:
    it gets exactly 2 more attempts, then its (single) point is rejected — a third attempt,
    which this service would have taken, is never made."""
    log, result, counters, reported = await replay_scripted(
        tmp_path, [500] * 5 + [200] + [500, 500] + [200])
    assert log == ["points 500"] * 5 + ["probe 200"] + ["points 500"] * 2
    assert (result.delivered, result.rejected) == (0, 1)
    assert (counters.spooled, counters.sent, counters.rejected) == (0, 0, 1)
    assert len(reported) == 1 and "HTTP 500 on every attempt" in str(reported[0])


async def test_an_outage_while_retrying_a_suspect_is_waited_out_not_a_refusal(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """The suspect's attempts meet a service that no longer answers at all (connection
    refused): that is an outage, not a refusal of these points — Recovery waits, and once the
    service takes the point it is delivered; nothing is rejected."""
    log, result, counters, reported = await replay_scripted(
        tmp_path, [500] * 5 + [200] + [0, 0] + [200])
    assert log == ["points 500"] * 5 + ["probe 200"] + ["points 0"] * 2 + ["points 200"]
    assert (result.delivered, result.rejected, reported) == (1, 0, [])
    assert (counters.spooled, counters.sent, counters.rejected) == (0, 1, 0)
    assert segments(tmp_path) == []


async def test_a_service_that_stopped_answering_is_waited_for_not_probed(
        tmp_path: Path, autojump_clock: trio.abc.Clock) -> None:
    """500s and then no answer at all: the last attempt decides — an outage, so no probe and
    no suspicion of the points; the next round delivers them."""
    log, result, _, reported = await replay_scripted(tmp_path, [500] * 4 + [0] + [200])
    assert log == ["points 500"] * 4 + ["points 0"] + ["points 200"]
    assert (result.delivered, result.rejected, reported) == (1, 0, [])


async def test_sync_sends_nothing_after_a_segment_it_could_not_deliver(tmp_path: Path) -> None:
    """Sync stops at the first segment the service does not take (503 twice), even if the
    service would take the next one: later points never overtake earlier ones."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 10))], [record(1, LOSS, range(10, 20))],
                              [record(1, LOSS, range(20, 30))]])
    before = segments(tmp_path)
    client, seen = recorder(lambda body: 503 if values_sent([body])[0] == 0.0 else 200)
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert [values_sent([body])[0] for body in seen] == [0.0, 0.0]
    assert (result.delivered, result.segments) == (0, 0)
    assert result.stopped is not None and segments(tmp_path) == before


async def test_sync_sends_a_merged_request_in_one_lane_by_default(tmp_path: Path) -> None:
    """``metrana sync`` replays with one lane: two series of one record go in one request."""
    write_segments(tmp_path, [[encode_record(1, [(key, False, [(0, None, 1.0, 1)])
                                                 for key in (LOSS, ACC)])]])
    client, seen = recorder()
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert result.delivered == 2
    assert [sorted(s["metricName"] for u in body["runUpdates"] for s in u["series"])
            for body in seen] == [["acc", "loss"]]


async def test_a_segment_another_replayer_deleted_meanwhile_counts_as_done(
        tmp_path: Path) -> None:
    """Two replayers of one spool (a sync beside a resumed run) may both send a segment; the
    one that finishes second finds it gone: no error, and the next segment is replayed."""
    write_segments(tmp_path, [[record(1, LOSS, range(0, 2))], [record(1, LOSS, range(2, 4))]])
    first = segments(tmp_path)[0]

    def answer(body: dict[str, Any]) -> int:
        first.unlink(missing_ok=True)  # the other replayer finished this segment first
        return 200

    client, seen = recorder(answer)
    async with client:
        result = await replay_directory(client, tmp_path, TARGET, QUICK, Counters(),
                                        lambda e: None)
    assert values_sent(seen) == [0.0, 1.0, 2.0, 3.0]
    assert (result.delivered, result.segments, result.stopped) == (4, 2, None)
    assert segments(tmp_path) == []

"""Closing: each strategy's outcome and its time bound, the summary line for every kind of
drop, the default retry policy the engine uses, the at-exit close and Ctrl-C.

The first part runs the engine in the test's trio loop against a mock service on trio's
``autojump_clock`` (virtual time: a 30 s timeout costs nothing, and times are exact); the end
to end tests at the bottom use a real ``metrana serve`` and real processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import metrana
from metrana._spool import decode_record, read_segment, run_spool_dir, segments
from metrana._transport import RetryPolicy
from metrana._trio_session import TrioSession
from tests.mock_service import MockService, Seen, mock_session


def spooled_values(spool: Path) -> list[float]:
    out: list[float] = []
    for segment in segments(run_spool_dir(spool, "ws", "proj", "run")):
        for record in read_segment(segment):
            assert isinstance(record, bytes)
            out += [p[2] for _, _, points in decode_record(record)[1] for p in points]
    return out


def summary(messages: list[str]) -> str:
    (line,) = [m.rstrip("\n") for m in messages if "closed run" in m]
    return line


class Hang:
    """A rule for the mock service: the first update carrying points hangs (the service
    stopped answering mid-request); ``arrived`` is set when it is on the wire."""

    def __init__(self) -> None:
        self.arrived = trio.Event()

    async def __call__(self, seen: Seen) -> int:
        if seen.values():
            self.arrived.set()
            await trio.sleep_forever()
        return 200


async def log_in_flight_and_queued(run: Any, hang: Hang) -> None:
    """10 points in a request the service holds, then 5 more queued behind it."""
    for i in range(10):
        run.log("loss", float(i))
    await hang.arrived.wait()
    for i in range(10, 15):
        run.log("loss", float(i))


async def close_held(spool: Path | None = None, **close: Any
                     ) -> tuple[metrana.Metrics, float, MockService]:
    """Against a service that holds its first request: 10 points in flight, 5 queued, then
    ``aclose(**close)``. Returns the metrics, how long close took (trio time) and the service."""
    hang = Hang()
    service = MockService(hang)
    run = mock_session(service, spool, log_level="Warn")
    with trio.fail_after(100):
        async with run.running(init_timeout=5):
            await log_in_flight_and_queued(run, hang)
            start = trio.current_time()
            metrics = await run.aclose(**close)
            took = trio.current_time() - start
    return metrics, took, service


# ------------------------------------------------------------------ strategies, in time

async def test_complete_pending_cuts_in_flight_requests_at_close_timeout(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    """CompletePending: queued points are discarded at once; a request the service never
    answers is cut off when close_timeout runs out (not waited for forever), its points in
    doubt — and the summary says both."""
    metrics, took, _ = await close_held(timeout=3, strategy="CompletePending")
    assert took == pytest.approx(3)
    assert (metrics.sent, metrics.in_doubt, metrics.discarded, metrics.pending) == (0, 10, 5, 0)
    line = summary(loguru_messages)
    assert line.startswith("WARNING")
    assert ("5 points were discarded by close_strategy='CompletePending'; close_strategy="
            "'CompleteAll' (the default) delivers them") in line
    assert ("10 points were cut off in flight when close_timeout=3s ran out (the service may "
            "have stored them); a longer close_timeout, or a spool_dir, keeps them") in line


async def test_complete_pending_finishes_the_request_in_flight_and_discards_the_queue(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """CompletePending with a service that is slow (the first request takes 1 s) but answers:
    the 10 points in flight are delivered; the 5 queued behind them are discarded, not sent
    (and not spooled, though a spool is there)."""
    arrived = trio.Event()

    async def slow_first(seen: Seen) -> int:
        if seen.values() and not arrived.is_set():
            arrived.set()
            await trio.sleep(1)
        return 200

    service = MockService(slow_first)
    run = mock_session(service, tmp_path)
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
        await arrived.wait()
        for i in range(10, 15):
            run.log("loss", float(i))
        await trio.sleep(0.5)  # batched (0.2 s) and queued behind the request in flight
        metrics = await run.aclose(timeout=30, strategy="CompletePending")
    assert service.delivered() == [float(i) for i in range(10)]
    assert (metrics.sent, metrics.discarded, metrics.spooled, metrics.in_doubt) == (10, 5, 0, 0)
    assert spooled_values(tmp_path) == []


async def test_complete_all_spools_what_is_left_when_close_timeout_runs_out(
        autojump_clock: trio.abc.Clock, tmp_path: Path, loguru_messages: list[str]) -> None:
    """CompleteAll with a spool: at the timeout the held request and the queued points go to
    disk (nothing discarded), and the summary says where they wait and how to send them."""
    metrics, took, _ = await close_held(tmp_path, timeout=4)
    assert took == pytest.approx(4)
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.in_doubt) == (0, 15, 0, 0)
    assert sorted(spooled_values(tmp_path)) == [float(i) for i in range(15)]
    assert any(m.startswith("WARNING") and "close timed out after 4s; writing undelivered "
               "points to the spool" in m for m in loguru_messages)
    line = summary(loguru_messages)
    directory = run_spool_dir(tmp_path, "ws", "proj", "run")
    assert line.startswith("WARNING") and (
        f"15 points wait in {directory}: they are delivered by the next init() of this run, "
        f"or by `metrana sync {directory}`") in line


async def test_complete_all_without_a_spool_counts_what_the_timeout_cut_off(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    metrics, took, _ = await close_held(timeout=2)
    assert took == pytest.approx(2)
    assert (metrics.sent, metrics.in_doubt, metrics.discarded, metrics.spooled) == (0, 10, 5, 0)
    line = summary(loguru_messages)
    assert ("5 points were discarded: close_timeout=2s ran out with no spool to keep them; a "
            "longer close_timeout, or a spool_dir, keeps them") in line


async def test_immediate_returns_at_once_and_sends_nothing_more(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    metrics, took, service = await close_held(strategy="Immediate")
    assert took == 0
    assert (metrics.sent, metrics.in_doubt, metrics.discarded) == (0, 10, 5)
    assert len(service.updates()) == 1  # the held request: no closeRun, nothing else
    line = summary(loguru_messages)
    assert ("10 points were cut off in flight by close_strategy='Immediate' (the service may "
            "have stored them); close_strategy='CompleteAll' waits for their answer") in line
    assert "5 points were discarded by close_strategy='Immediate'" in line


async def test_complete_all_delivers_everything_and_then_says_the_run_is_closed(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    """A slow service (3 s a request): CompleteAll waits for it within close_timeout; the
    summary is a SUCCESS line with the exact counts; closeRun comes last."""
    async def slow(seen: Seen) -> int:
        await trio.sleep(3)
        return 200

    service = MockService(slow)
    run = mock_session(service, log_level="Success")
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
        await trio.sleep(1)
        for i in range(10, 15):
            run.log("loss", float(i))
        metrics = await run.aclose(timeout=30)
    assert (metrics.sent, metrics.discarded, metrics.retries) == (15, 0, 0)
    assert service.delivered() == [float(i) for i in range(15)]
    assert service.updates()[-1].body["runUpdates"][0].get("closeRun") == {}
    assert summary(loguru_messages) == (
        f"SUCCESS metrana: closed run run: 15 of 15 points delivered, 0 spooled; 0 discarded "
        f"at close, 0 dropped (queue full), 0 rejected, 0 failed, 0 invalid; "
        f"{metrics.requests} requests, 0 retries")
    assert metrics.requests == 1 + len(service.updates())


async def test_closing_while_the_service_refuses_connections_spools_at_once(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """Nothing listens (connection refused): close() does not wait out close_timeout (600 s
    here): a probe of at most 2 s, then everything goes to the spool."""
    service = MockService()
    service.refused = True
    run = mock_session(service, tmp_path)
    async with run.running(init_timeout=5):
        for i in range(20):
            run.log("loss", float(i))
        await trio.sleep(1)
        start = trio.current_time()
        metrics = await run.aclose(timeout=600)
        assert trio.current_time() - start <= 2
    assert (metrics.spooled, metrics.sent, metrics.discarded) == (20, 0, 0)
    assert sorted(spooled_values(tmp_path)) == [float(i) for i in range(20)]


@pytest.mark.parametrize("spool", [True, False])
async def test_spool_now_ends_the_session_at_once_keeping_what_it_can(
        autojump_clock: trio.abc.Clock, tmp_path: Path, spool: bool) -> None:
    """What a Ctrl-C during close asks of the engine (``spool_now``), in process: 10 points in
    a request the service holds, 5 queued. With a spool all 15 are written to it, in order;
    without one the session stops as an Immediate close: the 10 in flight are in doubt, the 5
    queued discarded. Either way the engine finishes at once, without close() being called."""
    hang = Hang()
    run = mock_session(MockService(hang), tmp_path if spool else None)
    async with run.running(init_timeout=5):
        await log_in_flight_and_queued(run, hang)
        start = trio.current_time()
        run._engine.spool_now()
        with trio.fail_after(60):
            await run._engine.finished.wait()
        assert trio.current_time() - start <= 0.2  # the queued batch's age, no more
        metrics = await run.aclose()
    counts = (metrics.sent, metrics.spooled, metrics.discarded, metrics.in_doubt, metrics.failed)
    if spool:
        assert counts == (0, 15, 0, 0, 0)
        assert spooled_values(tmp_path) == [float(i) for i in range(15)]
    else:
        assert counts == (0, 0, 5, 10, 0)


def outage_session(service: MockService, tmp_path: Path) -> TrioSession:
    """A session whose retries are spent in 2 s (virtual): an outage comes quickly."""
    return mock_session(service, tmp_path,
                        retry=RetryPolicy(initial=1, multiplier=1, max_delay=1, max_attempts=2))


async def log_into_an_outage(run: TrioSession) -> None:
    """20 points the service answers 503 to: once the retries are spent, all on disk."""
    for i in range(20):
        run.log("loss", float(i))
    await trio.sleep(10)


@pytest.mark.parametrize("how", ["hangs", "fails to connect without a definite refusal"])
async def test_closing_while_the_service_is_busy_waits_for_it_until_close_timeout(
        autojump_clock: trio.abc.Clock, tmp_path: Path, how: str) -> None:
    """During an outage the service accepts connections but answers nothing (or connecting
    fails in a way that is not a definite refusal): it may be there, busy. close() waits for
    it until close_timeout (600 s here), then writes what is left to the spool."""
    hung = [False]
    service = MockService()

    async def rule(seen: Seen) -> int:
        if hung[0]:
            await trio.sleep_forever()
        return 503

    service.rule = rule
    run = outage_session(service, tmp_path)
    async with run.running(init_timeout=5):
        await log_into_an_outage(run)
        if how == "hangs":
            hung[0] = True
        else:
            service.down = True
        await trio.sleep(10)
        start = trio.current_time()
        metrics = await run.aclose(timeout=600)
        assert trio.current_time() - start >= 600
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.in_doubt) == (0, 20, 0, 0)
    assert spooled_values(tmp_path) == [float(i) for i in range(20)]


async def test_a_busy_service_that_answers_before_close_timeout_gets_everything(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """During an outage at close the service holds every request 5 s (busy, not gone): close()
    waits, and once it answers everything is delivered — nothing is spooled for good."""
    slow = [False]

    async def rule(seen: Seen) -> int:
        if slow[0]:
            await trio.sleep(5)
            return 200
        return 503

    service = MockService(rule)
    run = outage_session(service, tmp_path)
    async with run.running(init_timeout=5):
        await log_into_an_outage(run)
        slow[0] = True
        metrics = await run.aclose(timeout=30)
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.in_doubt) == (20, 0, 0, 0)
    assert sorted(service.delivered()) == [float(i) for i in range(20)]
    assert spooled_values(tmp_path) == []


# --------------------------------------------------------------- the summary, every drop

@pytest.mark.parametrize(("spool", "reason"), [
    (False, "the spool is off (spool_dir)"),
    (True, "the spool was full or unwritable (spool_max_bytes, spool_dir)"),
])
async def test_points_that_could_not_be_kept_are_warned_about(
        autojump_clock: trio.abc.Clock, tmp_path: Path, loguru_messages: list[str],
        spool: bool, reason: str) -> None:
    """Retries spent and nowhere to keep the points: `failed`, and the summary says why."""
    run = mock_session(MockService(lambda seen: 503), tmp_path if spool else None,
                       spool_max_bytes=10, log_level="Warn")
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
        await trio.sleep(120)  # the retry budget (about a minute) is spent
        metrics = await run.aclose()
    assert (metrics.failed, metrics.sent, metrics.spooled) == (10, 0, 0)
    line = summary(loguru_messages)
    assert line.startswith("WARNING") and f"10 points could be neither delivered nor " \
        f"spooled: {reason}" in line


async def test_points_dropped_by_backpressure_are_warned_about(
        loguru_messages: list[str]) -> None:
    """DropNew with a queue of 5 and 20 points logged before the engine runs: 15 dropped."""
    run = mock_session(MockService(), event_queue_max_size=5, log_level="Warn")
    async with run.running(init_timeout=5):
        for i in range(20):
            run.log("loss", float(i))
        metrics = await run.aclose()
    assert (metrics.sent, metrics.dropped_backpressure, metrics.logged) == (5, 15, 20)
    line = summary(loguru_messages)
    assert line.startswith("WARNING") and ("15 points were dropped because the queue was full "
                                           "(event_queue_max_size=5); a larger "
                                           "event_queue_max_size or backpressure_strategy='Block' "
                                           "keeps them") in line


async def test_refused_points_make_the_summary_a_warning(loguru_messages: list[str]) -> None:
    run = mock_session(MockService(lambda seen: 422), log_level="Warn")
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
        metrics = await run.aclose()
    assert (metrics.rejected, metrics.sent) == (1, 0)
    assert summary(loguru_messages).startswith("WARNING metrana: closed run run: 0 of 1 points "
                                               "delivered, 0 spooled; 0 discarded at close, 0 "
                                               "dropped (queue full), 1 rejected")


async def test_a_refusal_is_reported_with_its_status_body_and_points() -> None:
    """What the error strategy receives for refused points: a MetranaApiError carrying the
    status, the service's answer and how many points it cost."""
    run = mock_session(MockService(lambda seen: 422), error_strategy="RaiseOnClose")
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
        with pytest.raises(Exception) as raised:
            await run.aclose()
    errors = [e for e in raised.value.exceptions  # type: ignore[attr-defined]
              if isinstance(e, metrana.MetranaApiError)]
    assert [(e.status, e.points, e.body, str(e)) for e in errors] == [
        (422, 1, '{"message":"mock answered 422"}',
         'the service refused 1 points with HTTP 422: {"message":"mock answered 422"}')]


# ------------------------------------------------------------- the default retry policy

async def test_the_engine_retries_by_the_documented_policy(
        autojump_clock: trio.abc.Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """README: 0.1 s ×1.5, capped at 30 s, 15 attempts, with jitter. The engine's own default
    (no retry= hook): a batch is tried 15 times, the gaps are the jittered delays of attempts
    0..13 (jitter pinned to its top here), then its points count as failed (spool off)."""
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    service = MockService(lambda seen: 503)
    run = mock_session(service)
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
        await trio.sleep(200)
        metrics = await run.aclose()
    tries = service.point_updates()
    assert len(tries) == 15
    gaps = [b.time - a.time for a, b in zip(tries, tries[1:], strict=False)]
    assert gaps == pytest.approx([min(30.0, 0.1 * 1.5**n) for n in range(14)])
    assert gaps[-1] == pytest.approx(19.46195068359375)  # 0.1 * 1.5**13: 15 attempts stay under the cap
    assert (metrics.failed, metrics.retries) == (10, 14)


async def test_during_an_outage_the_service_is_asked_again_at_least_every_5_s(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """A 10-minute outage: once a batch's retries are spent its points are spooled, and
    Recovery asks again at most 5 s apart (not the 30 s of the normal backoff cap), so the
    backlog moves within 5 s of the service's return; every point arrives once, in order."""
    back_at = 600.0

    def outage(seen: Seen) -> int:
        return 503 if trio.current_time() < back_at else 200

    service = MockService(outage)
    run = mock_session(service, tmp_path)
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
        await trio.sleep(120)
        for i in range(10, 20):
            run.log("loss", float(i))
        await trio.sleep(back_at)
        metrics = await run.aclose()
    times = [s.time for s in service.updates() if 120 < s.time < back_at]
    assert len(times) > 100
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) <= 5.0
    first_ok = min(s.time for s in service.updates() if s.status == 200 and s.values())
    assert back_at <= first_ok <= back_at + 5.0
    assert service.delivered() == [float(i) for i in range(20)]
    assert (metrics.sent, metrics.spooled, metrics.replayed) == (20, 0, 20)

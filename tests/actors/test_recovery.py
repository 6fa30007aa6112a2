"""Recovery: during an outage the spool is replayed oldest first while logging goes on, and
the run switches back to direct sending only once the spool is empty — so no point ever
overtakes an older one. Engine-level tests on a mock service in virtual time
(``autojump_clock``): an outage of minutes costs milliseconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

import metrana
from metrana._spool import run_spool_dir, segments
from metrana._transport import RetryPolicy
from tests.mock_service import MockService, Seen, mock_session


def outage(start: float, end: float) -> MockService:
    """Updates answered 503 between ``start`` and ``end`` (trio time), 200 otherwise."""
    return MockService(lambda seen: 503 if start <= trio.current_time() < end else 200)


async def log_steadily(run: metrana.TrioSession, seconds: float, every: float = 0.1) -> int:
    """One point every ``every`` seconds for ``seconds``; returns how many."""
    count = int(seconds / every)
    for i in range(count):
        run.log("loss", float(i))
        await trio.sleep(every)
    return count


async def log_through(rule: Any, tmp_path: Path) -> tuple[MockService, int, metrana.Metrics]:
    """Log steadily for 100 s against a service answering by ``rule``; every point logged
    reaches it once, in order."""
    service = MockService(rule)
    run = mock_session(service, tmp_path, retry=QUICK)
    async with run.running(init_timeout=5):
        count = await log_steadily(run, 100)
        metrics = await run.aclose()
    assert service.delivered() == [float(i) for i in range(count)]
    return service, count, metrics


QUICK = RetryPolicy(initial=0.1, multiplier=1.5, max_delay=1.0, max_attempts=6)


async def test_logging_through_an_outage_delivers_every_point_once_in_order(
        autojump_clock: trio.abc.Clock, tmp_path: Path, loguru_messages: list[str]) -> None:
    """A point every 0.1 s for 100 s; the service answers 503 from 20 s to 60 s: every point
    arrives exactly once, in the order logged, the spool ends empty, the return is announced
    with the number of points replayed, and close is prompt."""
    service = outage(20, 60)
    run = mock_session(service, tmp_path, log_level="Info", retry=QUICK)
    async with run.running(init_timeout=5):
        count = await log_steadily(run, 100)
        closing = trio.current_time()
        metrics = await run.aclose()
        closed_in = trio.current_time() - closing
    assert service.delivered() == [float(i) for i in range(count)]
    # Recovery finishes once the dispatchers are done and the spool is empty: close does not
    # wait out close_timeout for it (nor says it timed out).
    assert closed_in < 1.0
    assert not [m for m in loguru_messages if "timed out" in m]
    assert (metrics.sent, metrics.spooled, metrics.failed, metrics.discarded) == (count, 0, 0, 0)
    assert 390 <= metrics.replayed <= 420  # the outage's 40 s of points, and the retries' few
    assert segments(run_spool_dir(tmp_path, "ws", "proj", "run")) == []
    back = [m for m in loguru_messages if "the service answers again" in m]
    assert back == [f"INFO metrana: the service answers again; {metrics.replayed:,} spooled "
                    "points delivered, sending directly again\n"]


async def test_a_second_outage_during_the_catch_up_goes_back_to_the_spool(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """The service returns for a moment and goes away again: batches held while catching up
    wait at most 5 s, then go back to the spool; nothing is lost or reordered."""
    windows = [(20, 50), (50.5, 80)]

    def rule(seen: Seen) -> int:
        now = trio.current_time()
        return 503 if any(a <= now < b for a, b in windows) else 200

    service, count, metrics = await log_through(rule, tmp_path)
    assert (metrics.sent, metrics.spooled) == (count, 0)


async def test_a_run_the_service_never_created_is_created_before_its_points_are_replayed(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """Nothing answers for 5 minutes from the start: the points wait on disk; once the
    service is back the run is created (once), its config sent, then every point in order."""
    service = MockService(down=True)
    run = mock_session(service, tmp_path, attributes=[{"path": "config/lr", "floatValue": 0.1}])
    async with run.running(init_timeout=5):
        for i in range(50):
            run.log("loss", float(i))
            await trio.sleep(1)
        await trio.sleep(250)
        service.down = False
        for i in range(50, 60):
            run.log("loss", float(i))
        await trio.sleep(30)
        metrics = await run.aclose()
    answered = [s for s in service.requests if s.status]
    assert [s.path for s in answered[:2]] == ["/v1/runs", "/v1/runs:update"]
    assert answered[1].body["runUpdates"][0]["attributes"] == [
        {"path": "config/lr", "floatValue": 0.1}]
    assert sum(1 for s in answered if s.path == "/v1/runs") == 1
    assert service.delivered() == [float(i) for i in range(60)]
    # The 50 outage points come from the spool; the 10 logged once the service is back go
    # through it too if Recovery still holds the lane then (spool writes run in a worker
    # thread, on real time), else straight out: either way each point is sent once, in order.
    assert (metrics.sent, metrics.spooled) == (60, 0) and metrics.replayed in (50, 60)


async def test_a_refusal_when_the_run_is_finally_created_stops_the_engine_and_keeps_the_spool(
        autojump_clock: trio.abc.Clock, tmp_path: Path, loguru_messages: list[str]) -> None:
    """The service comes back but refuses the run (HTTP 401): that is reported, the engine
    stops, and the points stay on disk for a later sync instead of being dropped; points
    logged after that are counted as discarded, not raised from log()."""
    service = MockService(down=True, create=lambda seen: 401)
    run = mock_session(service, tmp_path, error_strategy="RaiseOnClose", log_level="Warn")
    async with run.running(init_timeout=5):
        for i in range(20):
            run.log("loss", float(i))
        await trio.sleep(200)
        service.down = False
        await trio.sleep(30)
        for i in range(5):  # the training loop goes on: no raise, the points are discarded
            run.log("loss", 100.0 + i)
        with pytest.raises(Exception) as raised:
            await run.aclose()
    errors = [e for e in raised.value.exceptions if isinstance(e, metrana.MetranaApiError)]  # type: ignore[attr-defined]
    assert [e.status for e in errors] == [401]
    metrics = run.get_metrics()
    assert (metrics.spooled, metrics.sent, metrics.discarded) == (20, 0, 5)
    assert service.point_updates() == []
    (line,) = [m for m in loguru_messages if "closed run" in m]
    assert "5 points logged after the run could not be logged to were discarded (creating " \
        "run ws/proj/run: the server needs an API key (HTTP 401)" in line
    assert "close_timeout" not in line, line
    assert "20 points wait in " in line


async def test_recovery_catches_up_with_a_run_that_keeps_logging(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """A service that takes 0.3 s per request, away from 20 s to 30 s, while a point is logged
    every 0.1 s for 100 s: each replay round spools more new batches than it takes, so Recovery
    holds new batches in memory for its last round — and the run is back to direct sending
    soon after the outage, instead of replaying everything logged until the end."""
    async def rule(seen: Seen) -> int:
        await trio.sleep(0.3)
        return 503 if 20 <= trio.current_time() < 30 else 200

    service, count, metrics = await log_through(rule, tmp_path)
    assert (metrics.sent, metrics.spooled, metrics.failed) == (count, 0, 0)
    # The outage's 10 s of points (100) and the few batches of its last retries; without the
    # catch-up, every point from 20 s to the end (~800) would go through the spool.
    assert 100 <= metrics.replayed <= 130


async def test_recovery_waits_for_the_last_lane_before_it_stops(
        autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    """Two lanes; at close, lane 0 (series a) is done at once while lane 1 (series b) is still
    retrying 503s and then spools its batch: Recovery stays until every lane is done, so it
    replays that batch once the service is back (at 10 s) — the spool ends empty."""
    service = MockService(lambda seen: 503 if not seen.values("a") and trio.current_time() < 10
                          else 200)  # away (probes too) but for the first request of a
    run = mock_session(service, tmp_path, num_dispatch_workers=2,
                       retry=RetryPolicy(initial=1, multiplier=1, max_delay=1, max_attempts=3))
    async with run.running(init_timeout=5):
        run.log("a", 1.0)
        run.log("b", 2.0)
        metrics = await run.aclose(timeout=60)
    assert (service.delivered("a"), service.delivered("b")) == ([1.0], [2.0])
    assert (metrics.sent, metrics.spooled, metrics.replayed) == (2, 0, 1)
    assert segments(run_spool_dir(tmp_path, "ws", "proj", "run")) == []

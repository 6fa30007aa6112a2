"""The engine: the delivery mode its actors share, and what it sends around the points (the
run, its config, an earlier session's spool first, ``closeRun`` last). Narrow tests over
``httpx.MockTransport`` recording every request in order."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from metrana._config import resolve_settings
from metrana._delivery import CATCH_UP_GRACE, Delivery, DeliveryMode
from metrana._engine import EngineOptions
from metrana._series import SeriesKey
from metrana._spool import SpoolWriter, encode_record, run_spool_dir, segments
from metrana._trio_session import TrioSession

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def mode(d: Delivery) -> DeliveryMode:
    """Read the mode afresh (the calls in between change it; mypy would narrow a read)."""
    return d.mode


def delivery(spool: Path | None, said: list[str] | None = None) -> Delivery:
    return Delivery(offline=False, spool_dir=spool,
                    say=lambda level, message: (said if said is not None else []).append(message))


async def test_an_outage_sends_batches_to_the_spool_and_wakes_recovery(tmp_path: Path) -> None:
    said: list[str] = []
    d = delivery(tmp_path, said)
    assert mode(d) is DeliveryMode.DIRECT and not d.spool_only
    d.enter_outage("connection refused")
    assert mode(d) is DeliveryMode.OUTAGE and d.spool_only and d.outage
    assert d.recovery_wake.is_set()
    assert "connection refused" in said[0] and str(tmp_path) in said[0]
    await d.wait_sendable()  # spooling: dispatchers go on at once


async def test_without_a_spool_there_is_no_outage_mode() -> None:
    d = delivery(None)
    d.enter_outage("down")
    assert mode(d) is DeliveryMode.DIRECT and not d.spool_only


async def test_catching_up_holds_new_batches_until_the_spool_is_empty(tmp_path: Path) -> None:
    """While Recovery replays the last records, dispatchers wait; then they send directly."""
    d = delivery(tmp_path)
    d.run_created()
    d.enter_outage("down")
    d.catch_up()
    assert mode(d) is DeliveryMode.CATCHING_UP and not d.spool_only
    released: list[DeliveryMode] = []

    async def dispatcher() -> None:
        await d.wait_sendable()
        released.append(mode(d))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(dispatcher)
        await trio.testing.wait_all_tasks_blocked()
        assert released == []  # held
        d.recovered()
    assert released == [DeliveryMode.DIRECT] and not d.outage


async def test_catching_up_gives_up_holding_after_the_grace(tmp_path: Path,
                                                            autojump_clock: trio.abc.Clock) -> None:
    """If the last records take longer (the service went away again), batches go back to
    the spool instead of piling up in memory."""
    assert CATCH_UP_GRACE == 5.0
    d = delivery(tmp_path)
    d.enter_outage("down")
    d.catch_up()
    start = trio.current_time()
    released: list[float] = []

    async def dispatcher() -> None:
        await d.wait_sendable()
        released.append(trio.current_time() - start)

    async with trio.open_nursery() as nursery:  # two lanes held at once
        nursery.start_soon(dispatcher)
        nursery.start_soon(dispatcher)
    assert released == [5.0, 5.0]
    assert mode(d) is DeliveryMode.OUTAGE and d.spool_only
    with trio.move_on_after(1) as later:  # a later batch is spooled at once, not held
        await d.wait_sendable()
    assert not later.cancelled_caught and trio.current_time() - start == 5.0


async def test_forced_is_for_good_and_offline_stays_offline(tmp_path: Path) -> None:
    d = delivery(tmp_path)
    d.enter_outage("down")
    d.force()
    d.recovered()
    assert mode(d) is DeliveryMode.FORCED and d.spool_only
    offline = Delivery(offline=True, spool_dir=tmp_path, say=lambda level, message: None)
    offline.force()
    offline.enter_outage("x")
    assert mode(offline) is DeliveryMode.OFFLINE and offline.run_ready.is_set()


# ------------------------------------------------------------------- the engine, end to end

class Service:
    """A mock ingestion service recording (path, body) of every request, in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, json.loads(request.content)))
        return httpx.Response(409 if request.url.path.endswith("/runs") and self.created else 200,
                              json={})

    @property
    def created(self) -> bool:
        return sum(1 for path, _ in self.requests if path.endswith("/runs")) > 1

    def updates(self) -> list[dict[str, Any]]:
        return [body["runUpdates"][0] for path, body in self.requests if path.endswith(":update")]


def session_for(service: Service, spool: Path | None = None, **settings: Any) -> TrioSession:
    arguments = {"workspace_name": "ws", "project_name": "proj", "run_name": "run",
                 "ingestion_url": "http://127.0.0.1:9", "log_level": "Off",
                 "spool_dir": spool, **settings}
    return TrioSession(resolve_settings(arguments, environ={}),
                       arguments.pop("attributes", None),
                       options=EngineOptions(transport=httpx.MockTransport(service)))


async def test_the_run_then_its_config_then_points_then_close_run() -> None:
    """POST /v1/runs first; the config 1,000 attributes a request; the points; and, once all
    is delivered, an update carrying only closeRun."""
    service = Service()
    attributes = [{"path": f"config/k{i}", "intValue": str(i)} for i in range(2500)]
    run = session_for(service, close_strategy="CompleteAll", attributes=attributes)
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
    paths = [path for path, _ in service.requests]
    assert paths[0] == "/v1/runs"
    updates = service.updates()
    assert [len(u.get("attributes", [])) for u in updates[:3]] == [1000, 1000, 500]
    assert [p["floatValue"] for u in updates[3:-1] for s in u.get("series", [])
            for p in s["points"]] == [float(i) for i in range(10)]
    assert updates[-1] == {"workspace": "ws", "project": "proj", "runName": "run",
                           "closeRun": {}}


async def test_an_immediate_close_sends_no_close_run() -> None:
    service = Service()
    run = session_for(service, close_strategy="Immediate")
    async with run.running(init_timeout=5):
        pass
    assert all("closeRun" not in u for u in service.updates())


async def test_an_earlier_sessions_spool_is_delivered_before_anything_new(
        tmp_path: Path, loguru_messages: list[str]) -> None:
    """init() of a run that left points on disk: those go first, then the new ones; the
    leftover segment is deleted once delivered. That is said (INFO), and not as an outage:
    the service answers."""
    directory = run_spool_dir(tmp_path, "ws", "proj", "run")
    writer = SpoolWriter(directory)
    key = SeriesKey(False, "loss", "ML_STEP", ())
    writer.append(encode_record(41, [(key, False, [(i, None, -float(i + 1), 10**18 + i)
                                                   for i in range(5)])]))
    writer.close()
    service = Service()
    run = session_for(service, tmp_path, log_level="Info")
    async with run.running(init_timeout=5):
        for i in range(3):
            run.log("loss", float(i))
    assert [m for m in loguru_messages if "spool" in m and "closed run" not in m] == [
        f"INFO metrana: found spooled points from an earlier session in {directory}; "
        "delivering them first\n",
        "INFO metrana: the service answers again; 5 spooled points delivered, sending "
        "directly again\n"]
    sent = [(body.get("sessionId"), p["floatValue"]) for path, body in service.requests
            if path.endswith(":update") for u in body["runUpdates"] for s in u.get("series", [])
            for p in s["points"]]
    assert [v for _, v in sent] == [-1.0, -2.0, -3.0, -4.0, -5.0, 0.0, 1.0, 2.0]
    assert {session for session, _ in sent[:5]} == {"41"}
    assert segments(directory) == []


# ----------------------------------------------------------- the engine, on a mock service

async def test_a_run_refused_at_creation_is_raised_and_nothing_is_sent() -> None:
    """HTTP 401 on POST /v1/runs: the session raises it (no retry, no update sent)."""
    import metrana
    from tests.mock_service import MockService, mock_session

    service = MockService(create=lambda seen: 401)
    run = mock_session(service)
    with pytest.raises(metrana.MetranaApiError, match="HTTP 401") as raised:
        async with run.running(init_timeout=5):
            pass
    assert raised.value.status == 401
    assert [s.path for s in service.requests] == ["/v1/runs"]


@pytest.mark.parametrize("status", [404, 405, 501])
async def test_a_url_that_is_not_metrana_says_so(status: int, loguru_messages: list[str]) -> None:
    """Raised by open_session(), and only raised: no warning line says it a second time."""
    import metrana
    from tests.mock_service import MockService, mock_session

    run = mock_session(MockService(create=lambda seen: status), log_level="Debug")
    with pytest.raises(metrana.MetranaApiError, match="does not look like a Metrana"):
        async with run.running(init_timeout=5):
            pass
    assert [m for m in loguru_messages if f"HTTP {status}" in m] == []


async def test_resuming_an_existing_run_is_said_and_never_refuses_by_default(
        loguru_messages: list[str]) -> None:
    import metrana
    from tests.mock_service import MockService, mock_session

    service = MockService(create=lambda seen: 409)
    run = mock_session(service, log_level="Success")
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
    assert run.resumed and run.get_metrics().sent == 1
    assert any("resuming run ws/proj/run, which already exists" in m for m in loguru_messages)
    refusing = mock_session(service, resume_strategy="Never")
    with pytest.raises(metrana.MetranaRunAlreadyExistsError, match="resume_strategy is Never"):
        async with refusing.running(init_timeout=5):
            pass


async def test_offline_sends_nothing_and_spools_everything(tmp_path: Path) -> None:
    from metrana._spool import read_manifest
    from tests.mock_service import MockService, mock_session

    service = MockService()
    run = mock_session(service, tmp_path, mode="offline", close_strategy="Immediate",
                       attributes=[{"path": "config/a", "intValue": "1"}])
    async with run.running(init_timeout=5):
        for i in range(10):
            run.log("loss", float(i))
    metrics = run.get_metrics()
    assert (metrics.spooled, metrics.sent, metrics.requests, metrics.discarded) == (10, 0, 0, 0)
    assert service.requests == []
    manifest = read_manifest(run_spool_dir(tmp_path, "ws", "proj", "run"))
    assert manifest is not None and manifest["attributes"] == [{"path": "config/a",
                                                                "intValue": "1"}]


async def test_no_close_run_while_points_wait_on_disk(autojump_clock: trio.abc.Clock,
                                                      tmp_path: Path) -> None:
    """A close that leaves points in the spool does not tell the service the run is done."""
    from tests.mock_service import MockService, mock_session

    service = MockService(lambda seen: 503)
    run = mock_session(service, tmp_path)
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
        await trio.sleep(120)
        metrics = await run.aclose(timeout=5)
    assert metrics.spooled == 1
    assert all("closeRun" not in s.body["runUpdates"][0] for s in service.updates())


async def test_a_crashed_actor_is_reported_counted_and_sends_no_close_run() -> None:
    """A bug (not a network error) in the transport: the engine stops, the error reaches the
    error strategy, what was not delivered is discarded and counted, closeRun is not sent."""
    import metrana
    from tests.mock_service import MockService, Seen, mock_session

    def broken(seen: Seen) -> int:
        raise RuntimeError("bug")

    service = MockService(broken)
    run = mock_session(service, error_strategy="RaiseOnClose")
    async with run.running(init_timeout=5):
        for i in range(5):
            run.log("loss", float(i))
        with pytest.raises(metrana.MetranaLoggerClosedError):
            await run.aflush()
        with pytest.raises(ExceptionGroup) as raised:
            await run.aclose()
    assert "stopped unexpectedly" in str(raised.value.exceptions[0])
    metrics = run.get_metrics()
    assert (metrics.discarded, metrics.sent, metrics.errors) == (5, 0, 1)
    assert len(service.updates()) == 1


async def test_bodies_follow_compress_and_carry_the_session(tmp_path: Path) -> None:
    """compress=True gzips bodies (with the header) even to a loopback service; every update
    names this session, the same for the points and closeRun."""
    from tests.mock_service import MockService, mock_session

    service = MockService()
    run = mock_session(service, compress=True)
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
    assert service.delivered() == [1.0]
    sessions = {s.body["sessionId"] for s in service.updates()}
    assert sessions == {str(run._engine.session_id)} and run._engine.session_id > 0
    # Each session its own id (64 random bits): the server keeps sessions' points apart.
    ids = {mock_session(service)._engine.session_id for _ in range(3)} | {run._engine.session_id}
    assert len(ids) == 4 and all(0 < i < 2**64 for i in ids)


async def test_without_a_spool_a_run_never_created_ends_the_session_at_once(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    """No spool and nothing answers for the whole retry budget of the run's creation: the user
    is told the points are kept in memory (not spooled), the creation failure is reported,
    and close does not wait out close_timeout (30 s) for a run that does not exist."""
    from metrana._transport import RetryPolicy
    from tests.mock_service import MockService, mock_session

    service = MockService(down=True)
    run = mock_session(service, log_level="Warn",
                       retry=RetryPolicy(initial=1, multiplier=1, max_delay=1, max_attempts=3))
    async with run.running(init_timeout=5):
        run.log("loss", 1.0)
        await trio.sleep(10)
        metrics = await run.aclose()
        assert trio.current_time() == 10.0
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.errors,
            metrics.requests) == (0, 0, 1, 1, 3)
    assert loguru_messages[0] == (
        "WARNING metrana: cannot reach http://127.0.0.1:9 (cannot connect ([Errno 111] "
        "Connection refused)) — is `metrana serve` running? (start it with `metrana serve`); "
        "points are kept in memory and sent when it answers\n")
    assert loguru_messages[1].startswith("WARNING metrana: http://127.0.0.1:9/v1/runs did not "
                                         "accept the request after 3 attempts")
    assert [s.path for s in service.requests] == ["/v1/runs"] * 3

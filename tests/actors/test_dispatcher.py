"""Retries: backoff with jitter, Retry-After honoured, 4xx (but 408/429) not retried.

Narrow unit tests on httpx.MockTransport with trio's autojump clock: no real sleeping.
"""

from __future__ import annotations

import errno
import json
import socket
import sys
import time
from typing import Any

import httpx
import pytest
import trio

import metrana
from metrana._actors.batcher import Batch
from metrana._actors.dispatcher import Dispatcher
from metrana._actors.error_collector import ErrorCollector
from metrana._actors.flush import FlushMarker
from metrana._actors.parcel import InFlight
from metrana._actors.step_counter import SeriesState
from metrana._delivery import Delivery
from metrana._enums import ErrorStrategy
from metrana._exceptions import MetranaConnectionError
from metrana._run_spool import RunSpool
from metrana._series import SeriesKey
from metrana._stats import Counters
from metrana._transport import (
    RetryPolicy,
    RunTarget,
    describe_failure,
    is_definite,
    is_transient,
    post_with_retries,
    refusal_error,
)

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def client_answering(statuses: list[int], seen: list[float], headers: dict[str, str] | None = None
                     ) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(trio.current_time())
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, headers=headers or {}, json={})

    return httpx.AsyncClient(base_url="http://svc/v1", transport=httpx.MockTransport(handler))


async def test_transient_statuses_are_retried_until_success(autojump_clock: trio.abc.Clock) -> None:
    """503, 429, 408, 500 are retried with growing delays; success ends it."""
    seen: list[float] = []
    counters = Counters()
    async with client_answering([503, 429, 408, 500], seen) as client:
        response = await post_with_retries(client, "/runs:update", b"{}", RetryPolicy(), counters)
    assert response.status_code == 200
    assert (counters.requests, counters.retries) == (5, 4)
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    policy = RetryPolicy()
    for attempt, gap in enumerate(gaps):
        full = policy.initial * policy.multiplier ** attempt
        assert full / 2 <= gap <= full + 1e-9  # jittered within [d/2, d]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
async def test_client_errors_are_not_retried(status: int, autojump_clock: trio.abc.Clock) -> None:
    """A 4xx other than 408/429 is returned at once: retrying cannot help."""
    seen: list[float] = []
    async with client_answering([status], seen) as client:
        response = await post_with_retries(client, "/x", b"{}", RetryPolicy(), Counters())
    assert response.status_code == status and len(seen) == 1


async def test_retry_after_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    """Retry-After: 7 makes the next attempt wait at least 7 seconds."""
    seen: list[float] = []
    async with client_answering([429], seen, {"Retry-After": "7"}) as client:
        await post_with_retries(client, "/x", b"{}", RetryPolicy(), Counters())
    assert seen[1] - seen[0] >= 7


async def test_budget_exhausted_is_a_connection_error(autojump_clock: trio.abc.Clock) -> None:
    """After max_attempts transient failures: MetranaConnectionError naming the last status."""
    seen: list[float] = []
    async with client_answering([503] * 20, seen) as client:
        with pytest.raises(metrana.MetranaConnectionError, match="HTTP 503"):
            await post_with_retries(client, "/x", b"{}", RetryPolicy(max_attempts=4), Counters())
    assert len(seen) == 4


def test_backoff_is_capped() -> None:
    """Delays never exceed max_delay (without Retry-After)."""
    policy = RetryPolicy()
    assert max(policy.delay(n, None) for n in range(40)) <= policy.max_delay
    assert policy.delay(0, 1000.0) == policy.max_retry_after


async def test_bodies_are_gzipped_for_remote_services_only() -> None:
    """A non-loopback service gets gzip bodies (and says so); loopback gets plain JSON."""
    import gzip
    import json

    import metrana
    from metrana._config import resolve_settings
    from metrana._engine import EngineOptions
    from metrana._trio_session import TrioSession

    seen: list[tuple[str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("content-encoding"), request.content))
        return httpx.Response(200, json={})

    for url in ("https://metrics.example.com", "http://127.0.0.1:9"):
        settings = resolve_settings({"workspace_name": "w", "project_name": "p", "run_name": "r",
                                     "ingestion_url": url, "api_key": "k",
                                     "close_strategy": "CompleteAll"}, environ={})
        run = TrioSession(settings,
                          options=EngineOptions(transport=httpx.MockTransport(handler)))
        async with run.running(init_timeout=5):
            run.log("loss", 1.0)
            assert (await run.aclose()).sent == 1
        assert isinstance(run, metrana.TrioSession)
    (remote_encoding, remote_body), (local_encoding, local_body) = [
        s for s in seen if b"loss" in (gzip.decompress(s[1]) if s[0] == "gzip" else s[1])]
    assert remote_encoding == "gzip" and local_encoding is None
    for body in (json.loads(gzip.decompress(remote_body)), json.loads(local_body)):
        (series,) = body["runUpdates"][0]["series"]
        assert (series["metricName"], series["points"][0]["floatValue"]) == ("loss", 1.0)


# ------------------------------------------------------------ the documented retry policy

def test_the_default_policy_is_the_documented_one() -> None:
    """README: exponential backoff 0.1 s ×1.5, capped at 30 s, 15 attempts; Retry-After
    honoured up to 60 s."""
    policy = RetryPolicy()
    assert (policy.initial, policy.multiplier, policy.max_delay, policy.max_attempts,
            policy.max_retry_after) == (0.1, 1.5, 30.0, 15, 60.0)


@pytest.mark.parametrize(("attempt", "full"), [
    (0, 0.1), (1, 0.15), (2, 0.225), (5, 0.759375), (13, 19.46195068359375),
    (14, 29.192926025390625), (15, 30.0), (40, 30.0)])
def test_delays_are_jittered_between_half_and_all_of_the_capped_backoff(
        attempt: int, full: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """delay(n) = d/2 + uniform(0, d/2) with d = min(30, 0.1 × 1.5ⁿ)."""
    asked: list[tuple[float, float]] = []

    def top(low: float, high: float) -> float:
        asked.append((low, high))
        return high

    monkeypatch.setattr("random.uniform", top)
    assert RetryPolicy().delay(attempt, None) == pytest.approx(full)
    assert len(asked) == 1 and asked[0][0] == 0 and asked[0][1] == pytest.approx(full / 2)
    monkeypatch.setattr("random.uniform", lambda low, high: low)
    assert RetryPolicy().delay(attempt, None) == pytest.approx(full / 2)


def test_retry_after_raises_the_delay_up_to_60_s(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("random.uniform", lambda low, high: high)
    policy = RetryPolicy()
    assert policy.delay(0, 7.0) == 7.0  # longer than the backoff: the service's wish
    assert policy.delay(14, 7.0) == pytest.approx(29.192926025390625)  # shorter: the backoff
    assert policy.delay(0, 1000.0) == 60.0  # a service asking for ages: capped
    assert policy.delay(0, 0.0) == pytest.approx(0.1)


def test_transient_statuses() -> None:
    """408, 429 and 5xx except 501 and 505 are worth retrying; nothing else is."""
    transient = [status for status in range(100, 600) if is_transient(status)]
    assert transient == [408, 429, 500, *range(502, 505), *range(506, 600)]


async def test_every_attempt_is_counted_and_heard(autojump_clock: trio.abc.Clock) -> None:
    """requests and retries are exact; on_failure hears each failed attempt (its index, why,
    and whether anything answered at all); the request is marked on the wire only while it is."""
    flight = InFlight()
    answers: list[Any] = [httpx.ConnectError("refused"), 503,
                          httpx.ReadTimeout("slow"), 200]
    heard: list[tuple[int, str, bool]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert flight.outstanding is True
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={})

    counters = Counters()
    async with httpx.AsyncClient(base_url="http://svc/v1",
                                 transport=httpx.MockTransport(handler)) as client:
        response = await post_with_retries(
            client, "/runs:update", b"{}", RetryPolicy(), counters, flight=flight,
            on_failure=lambda *args: heard.append(args))
    assert response.status_code == 200 and flight.outstanding is False
    assert (counters.requests, counters.retries) == (4, 3)
    assert heard == [(0, "cannot connect (refused)", True), (1, "HTTP 503", False),
                     (2, "timed out waiting for an answer", False)]


async def spend_the_budget(answer: int | Exception) -> tuple[metrana.MetranaConnectionError,
                                                             int, Counters, InFlight]:
    seen: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(trio.current_time())
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer, json={})

    counters = Counters()
    flight = InFlight()
    async with httpx.AsyncClient(base_url="http://svc/v1",
                                 transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(metrana.MetranaConnectionError) as raised:
            await post_with_retries(client, "/runs:update", b"{}", RetryPolicy(), counters,
                                    flight=flight)
    return raised.value, len(seen), counters, flight


@pytest.mark.parametrize(("answer", "unreachable", "last"), [
    (503, False, "HTTP 503"), (httpx.ConnectError("no"), True, "cannot connect (no)")])
async def test_a_spent_budget_says_how_often_and_whether_anything_answered(
        autojump_clock: trio.abc.Clock, answer: int | Exception, unreachable: bool,
        last: str) -> None:
    """The default budget: 15 attempts, 14 retries; the error names the URL, the attempts
    and the last failure, and ``unreachable`` tells a dead host from a failing service."""
    error, attempts, counters, flight = await spend_the_budget(answer)
    assert str(error) == (f"http://svc/v1/runs:update did not accept the request after 15 "
                          f"attempts (last: {last})")
    assert error.unreachable is unreachable and flight.outstanding is False
    assert (attempts, counters.requests, counters.retries) == (15, 15, 14)


async def test_an_http_date_retry_after_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    """Retry-After as an HTTP date 20 s ahead: the next attempt waits until then; a date in
    the past or a header that is neither a number nor a date means the usual backoff; a date
    far ahead waits 60 s at most."""
    from email.utils import formatdate

    now = time.time()
    for header, low, high in ((formatdate(now + 20, usegmt=True), 18.9, 20.0),
                              (formatdate(now - 3600, usegmt=True), 0.05, 0.1),
                              ("in a moment", 0.05, 0.1),
                              ("-5", 0.05, 0.1),
                              (formatdate(now + 3600, usegmt=True), 60, 60)):
        seen: list[float] = []
        async with client_answering([503], seen, {"Retry-After": header}) as client:
            await post_with_retries(client, "/x", b"{}", RetryPolicy(), Counters())
        assert low - 1e-6 <= seen[1] - seen[0] <= high + 1e-6, (header, seen[1] - seen[0])


@pytest.mark.parametrize(("error", "said"), [
    (httpx.ConnectError("x"), "cannot connect (x)"),
    (httpx.ConnectError(""), "cannot connect"),
    (httpx.ConnectTimeout("x"), "connection timed out"),
    (httpx.ReadTimeout("x"), "timed out waiting for an answer"),
    (httpx.RemoteProtocolError("peer closed"), "RemoteProtocolError: peer closed"),
    (httpx.ReadError(""), "ReadError"),
])
def test_failures_are_described_in_words(error: httpx.TransportError, said: str) -> None:
    assert describe_failure(error) == said


def test_the_cause_of_a_failure_is_found_through_chains_and_groups() -> None:
    """httpx wraps the OS error; trio may group it: the root cause still names the problem."""
    import socket

    refused = httpx.ConnectError("All connection attempts failed")
    refused.__cause__ = ExceptionGroup("attempts", [OSError("x"), ConnectionRefusedError(111)])
    assert describe_failure(refused) == "connection refused"
    unknown = httpx.ConnectError("x")
    unknown.__context__ = socket.gaierror(-2, "Name or service not known")
    assert describe_failure(unknown) == "host name not found"
    looped = httpx.ConnectError("loop")
    looped.__cause__ = looped  # a cycle must not hang
    assert describe_failure(looped) == "cannot connect (loop)"


def _caused(cause: BaseException, error: type[httpx.TransportError] = httpx.ConnectError
            ) -> httpx.TransportError:
    wrapped = error("All connection attempts failed")
    wrapped.__cause__ = ExceptionGroup("attempts", [OSError("x"), cause])
    return wrapped


@pytest.mark.parametrize(("error", "definite"), [
    (_caused(ConnectionRefusedError(111, "Connection refused")), True),  # nothing listens
    (_caused(socket.gaierror(-2, "Name or service not known")), True),  # DNS fails
    (_caused(OSError(errno.EHOSTUNREACH, "No route to host")), True),
    (_caused(OSError(errno.ENETUNREACH, "Network is unreachable")), True),
    (httpx.ConnectError("[Errno 111] Connection refused"), False),  # nothing says so for sure
    (httpx.ConnectTimeout("x"), False),  # a full backlog, a firewall: maybe there, busy
    (_caused(ConnectionRefusedError(111), httpx.ReadError), False),  # connected: it is there
    (httpx.ReadTimeout("x"), False),
    (httpx.RemoteProtocolError("peer closed"), False),
])
def test_only_a_definite_answer_counts_as_nothing_there(error: httpx.TransportError,
                                                        definite: bool) -> None:
    assert is_definite(error) is definite


async def test_a_definite_refusal_is_not_retried_when_the_caller_can_keep_the_points() -> None:
    """give_up_if_definite: the first refused attempt raises (definite, naming the URL), with
    no retry and no backoff; without it the budget is spent as for any transient failure."""
    attempts: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(trio.current_time())
        raise _caused(ConnectionRefusedError(111, "Connection refused"))

    policy = RetryPolicy(initial=0.01, max_delay=0.01, max_attempts=4)
    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse),
                                 base_url="http://127.0.0.1:9/v1") as client:
        with pytest.raises(MetranaConnectionError) as raised:
            await post_with_retries(client, "/runs", b"{}", policy, Counters(),
                                    give_up_if_definite=True)
        assert raised.value.definite and len(attempts) == 1
        assert str(raised.value) == ("cannot reach http://127.0.0.1:9/v1/runs: connection "
                                     "refused")
        with pytest.raises(MetranaConnectionError) as raised:
            await post_with_retries(client, "/runs", b"{}", policy, Counters())
        assert not raised.value.definite and len(attempts) == 1 + 4


def test_a_refusal_keeps_2000_characters_of_the_answer_and_says_500() -> None:
    """A long refusal (a validation error listing every bad point): the error keeps the first
    2,000 characters of the answer as its body and quotes the first 500 in its message."""
    text = "".join(chr(ord("a") + i % 26) for i in range(5000))
    error = refusal_error(12_345, httpx.Response(413, text=text), "spooled points")
    assert (error.status, error.points, error.body) == (413, 12_345, text[:2000])
    assert str(error) == f"the service refused 12,345 spooled points with HTTP 413: {text[:500]}"


async def test_batches_queued_behind_a_request_are_merged_up_to_10000_points() -> None:
    """A lane's backlog drains in requests of up to 10,000 points, in order: batches of 6,000,
    3,000 and 1,000 go as one request of exactly 10,000; 2,000 then 9,000 go as two (together
    they would overflow); a flush marker is never merged over (what follows it goes after the
    marker is acknowledged)."""
    state = SeriesState(SeriesKey(False, "loss", "ML_STEP", ()))
    next_step = [0]

    def batch(count: int) -> Batch:
        first = next_step[0]
        next_step[0] += count
        items = [(0, None, None, float(first + i), 10**18 + first + i) for i in range(count)]
        return Batch([(state, [(first, items)])], count)

    requests: list[list[float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        requests.append([p["floatValue"] for u in body["runUpdates"] for s in u["series"]
                         for p in s["points"]])
        return httpx.Response(200, json={})

    counters = Counters()
    delivery = Delivery(offline=False, spool_dir=None, say=lambda level, text: None)
    delivery.run_created()
    marker = FlushMarker()
    marker.arm(1)
    send, receive = trio.open_memory_channel[Any](100)
    for item in (batch(6000), batch(3000), batch(1000), batch(2000), batch(9000), marker,
                 batch(10), batch(20)):
        send.send_nowait(item)
    send.close()
    async with httpx.AsyncClient(base_url="http://svc/v1",
                                 transport=httpx.MockTransport(handler)) as client:
        dispatcher = Dispatcher(receive, client, RunTarget(1, "ws", "proj", "run"),
                                ErrorCollector(ErrorStrategy.Silent, counters, print), counters,
                                RetryPolicy(), delivery,
                                RunSpool(None, 0, {}, 1, counters, lambda e: None))
        await dispatcher.run()
    assert [len(r) for r in requests] == [10_000, 2000, 9000, 30]
    assert [v for r in requests for v in r] == [float(i) for i in range(21_030)]
    assert marker.done.is_set() and counters.sent == 21_030


async def test_a_request_cancelled_while_its_body_is_written_leaves_nothing_to_finalize() -> None:
    """Close cancels requests on the wire (spooling what is left). Cancelled while its body
    is being written — the server takes no bytes — a POST must leave no half-run async
    generator behind: trio warns when one is collected (an error in this suite)."""
    import gc

    with socket.socket() as listener:  # listens, never accepts: the body cannot be written
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        async with httpx.AsyncClient(base_url=url) as client:
            with trio.move_on_after(1) as scope:
                await post_with_retries(client, "/runs:update", b"x" * (64 << 20),
                                        RetryPolicy(max_attempts=1), Counters())
            assert scope.cancelled_caught
            gc.collect()
            await trio.sleep(0)  # trio finalizes collected generators in a task of the run

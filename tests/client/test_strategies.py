"""Backpressure, close and error strategies, end to end through a fault-injecting proxy."""

from __future__ import annotations

import sys
import threading
import time
import uuid
from typing import Any

import pytest

from tests.faults import FaultProxy
from tests.helpers import read_points, wait_until

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup

import metrana
from metrana._thread_session import ThreadSession
from metrana._transport import RetryPolicy
from metrana.server import ServerInfo, Store


def stored_count(info: ServerInfo, run: str) -> int:
    store = Store(info.db_path)
    try:
        return sum(r["point_count"] for r in store.list_runs() if r["run"] == run)
    finally:
        store.close()


def stored_values(info: ServerInfo, run: str, series: str = "loss") -> list[float]:
    return [p["value"] for p in read_points(info, run).get(series, [])]


def stored_steps(info: ServerInfo, run: str, series: str = "loss") -> list[int]:
    return [p["step"] for p in read_points(info, run).get(series, [])]


def open_run(proxy: FaultProxy, retry: RetryPolicy, **kwargs: Any) -> ThreadSession:
    options: dict[str, Any] = {"workspace_name": "ws", "project_name": "proj",
               "run_name": f"run-{uuid.uuid4().hex[:8]}", "ingestion_url": proxy.url,
               "retry": retry, "log_level": "Warn", **kwargs}
    run = metrana.session(**options)
    assert isinstance(run, ThreadSession)
    return run


def close_in_thread(run: metrana.Session, **kwargs: object) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def target() -> None:
        try:
            result.append(run.close(**kwargs))  # type: ignore[arg-type]
        except BaseException as exc:  # noqa: BLE001
            result.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, result


def start_in_flight(run: metrana.Session, proxy: FaultProxy, count: int = 50) -> None:
    """Log ``count`` points and wait until their request is held at the proxy (in flight)."""
    proxy.hold()
    for i in range(count):
        run.log("loss", float(i))
    assert proxy.arrived.wait(10)


# ------------------------------------------------------------------ close strategies

def test_complete_all_delivers_in_flight_and_queued(proxy: FaultProxy, fast_retry: RetryPolicy,
                                                    live_server: ServerInfo) -> None:
    """CompleteAll: the held request and everything queued behind it arrive."""
    run = open_run(proxy, fast_retry, close_strategy="CompleteAll")
    start_in_flight(run, proxy)
    for i in range(50, 100):
        run.log("loss", float(i))
    thread, result = close_in_thread(run)
    wait_until(lambda: not run.is_open)  # the engine has the close request
    proxy.release()
    thread.join(30)
    metrics = result[0]
    assert isinstance(metrics, metrana.Metrics)
    assert (metrics.sent, metrics.discarded) == (100, 0)
    assert stored_count(live_server, run.run_name) == 100


def test_complete_pending_finishes_in_flight_and_discards_queued(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo) -> None:
    """CompletePending: the in-flight request completes; points still queued are discarded
    and counted, so the user is told."""
    run = open_run(proxy, fast_retry, close_strategy="CompletePending")
    start_in_flight(run, proxy)
    for i in range(50, 100):
        run.log("loss", float(i))
    thread, result = close_in_thread(run)
    wait_until(lambda: not run.is_open)  # the engine has the close request
    proxy.release()
    thread.join(30)
    metrics = result[0]
    assert isinstance(metrics, metrana.Metrics)
    assert (metrics.sent, metrics.discarded, metrics.in_doubt) == (50, 50, 0)
    assert stored_values(live_server, run.run_name) == [float(i) for i in range(50)]


def test_complete_pending_cuts_a_hung_request_at_close_timeout(
        proxy: FaultProxy, fast_retry: RetryPolicy) -> None:
    """CompletePending waits for requests in flight only up to close_timeout: a service that
    never answers cannot hang close(); the cut-off points are in doubt, the queued discarded."""
    run = open_run(proxy, fast_retry, close_strategy="CompletePending", close_timeout=0.5)
    start_in_flight(run, proxy)
    for i in range(50, 80):
        run.log("loss", float(i))
    started = time.monotonic()
    thread, result = close_in_thread(run)
    thread.join(30)
    assert time.monotonic() - started < 5  # 0.5 s, not the 15 s after which close gives up
    metrics = result[0]
    assert isinstance(metrics, metrana.Metrics)
    assert (metrics.sent, metrics.in_doubt, metrics.discarded, metrics.pending) == (0, 50, 30, 0)


def test_immediate_cancels_in_flight_and_discards_everything(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo) -> None:
    """Immediate: close returns without waiting for the held request; what was queued is
    discarded, the request cut off on the wire is in doubt — the service may store it (here
    it does, once released), and never anything that was queued."""
    run = open_run(proxy, fast_retry, close_strategy="Immediate")
    start_in_flight(run, proxy)
    for i in range(50, 100):
        run.log("loss", float(i))
    metrics = run.close()  # returns although the proxy still holds the request
    proxy.release()
    assert (metrics.sent, metrics.in_doubt, metrics.discarded) == (0, 50, 50)
    wait_until(lambda: proxy.count("/v1/runs:update") == 1)
    assert stored_values(live_server, run.run_name) == [float(i) for i in range(50)]


@pytest.mark.parametrize("spool", [True, False])
def test_close_honours_its_timeout_when_the_server_hangs(proxy: FaultProxy, fast_retry: RetryPolicy,
                                                         spool: bool) -> None:
    """A hung service cannot hang close(): it returns after the timeout; the points go to the
    spool (or, with the spool off, the request cut off on the wire is counted as in doubt)."""
    options = {} if spool else {"spool_dir": None}
    run = open_run(proxy, fast_retry, close_strategy="CompleteAll", **options)
    start_in_flight(run, proxy)
    thread, result = close_in_thread(run, timeout=0.3)
    thread.join(30)
    assert not thread.is_alive()
    metrics = result[0]
    assert isinstance(metrics, metrana.Metrics)
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.in_doubt) == (
        (0, 50, 0, 0) if spool else (0, 0, 0, 50))


# ------------------------------------------------------------- backpressure strategies

def stall(proxy: FaultProxy, run: metrana.Session) -> None:
    proxy.hold()
    run.log("warmup", 0.0)
    assert proxy.arrived.wait(10)


def test_drop_new_drops_and_counts_when_the_queue_is_full(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo) -> None:
    """DropNew: with the pipeline stalled, excess points are dropped and counted; the rest
    arrive once the service answers, in order, numbered without gaps (a dropped point never
    took a step)."""
    run = open_run(proxy, fast_retry, backpressure_strategy="DropNew", event_queue_max_size=100,
                   dispatch_queue_max_size=1, close_strategy="CompleteAll")
    stall(proxy, run)
    for i in range(100_000):
        run.log("loss", float(i))
    proxy.release()
    metrics = run.close()
    assert metrics.dropped_backpressure > 0
    assert metrics.sent + metrics.dropped_backpressure == metrics.logged == 100_001
    kept = metrics.sent - 1  # the warmup point
    values = stored_values(live_server, run.run_name)
    assert len(values) == kept and values[:100] == [float(i) for i in range(100)]
    assert all(a < b for a, b in zip(values, values[1:], strict=False))
    assert stored_steps(live_server, run.run_name) == list(range(kept))
    assert stored_values(live_server, run.run_name, "warmup") == [0.0]


def test_raise_raises_when_the_queue_is_full(proxy: FaultProxy, fast_retry: RetryPolicy,
                                             live_server: ServerInfo) -> None:
    """Raise: log() raises MetranaEventQueueFullError; everything accepted still arrives."""
    run = open_run(proxy, fast_retry, backpressure_strategy="raise", event_queue_max_size=100,
                   dispatch_queue_max_size=1, close_strategy="CompleteAll")
    stall(proxy, run)
    accepted = 0
    with pytest.raises(metrana.MetranaEventQueueFullError, match="100 points"):
        for i in range(200_000):
            run.log("loss", float(i))
            accepted += 1
    proxy.release()
    metrics = run.close()
    assert (metrics.sent, metrics.logged, metrics.dropped_backpressure) == (
        accepted + 1, accepted + 1, 0)
    assert stored_values(live_server, run.run_name) == [float(i) for i in range(accepted)]


def test_block_waits_and_loses_nothing(proxy: FaultProxy, fast_retry: RetryPolicy,
                                       live_server: ServerInfo) -> None:
    """Block: log() waits for room; every point arrives, in order."""
    run = open_run(proxy, fast_retry, backpressure_strategy="Block", event_queue_max_size=50,
                   close_strategy="CompleteAll")
    for i in range(20_000):
        run.log("loss", float(i))
    metrics = run.close()
    assert (metrics.sent, metrics.dropped_backpressure) == (20_000, 0)
    assert stored_values(live_server, run.run_name) == [float(i) for i in range(20_000)]


# ------------------------------------------------------------------ error strategies

def test_transient_503s_are_retried_until_points_arrive(proxy: FaultProxy, fast_retry: RetryPolicy,
                                                        live_server: ServerInfo) -> None:
    """A service answering 503 for a while: retried with backoff, every point arrives."""
    run = open_run(proxy, fast_retry, close_strategy="CompleteAll")
    proxy.fail_next(4, 503, {"Retry-After": "0"})
    for i in range(1000):
        run.log("loss", float(i))
    metrics = run.close()
    assert (metrics.sent, metrics.retries) == (1000, 4)
    assert proxy.count("/v1/runs:update", 503) == 4
    assert stored_values(live_server, run.run_name) == [float(i) for i in range(1000)]


def test_400_is_not_retried_and_warns_once(proxy: FaultProxy, fast_retry: RetryPolicy,
                                           loguru_messages: list[str]) -> None:
    """Warn: a rejected batch is counted, not retried, and warned about once per kind."""
    run = open_run(proxy, fast_retry, close_strategy="CompleteAll", error_strategy="Warn")
    proxy.reject_status = 400
    for i in range(30):
        run.log(f"m{i}", 1.0)
    metrics = run.close()
    assert metrics.rejected == 30 and metrics.sent == 0 and metrics.retries == 0
    assert proxy.count("/v1/runs:update", 400) == metrics.requests - 1  # minus the create
    warnings = [m for m in loguru_messages if m.startswith("WARNING") and "HTTP 400" in m]
    assert len(warnings) == 1 and "injected fault" in warnings[0]


def test_raise_on_log_raises_from_the_next_log(proxy: FaultProxy, fast_retry: RetryPolicy) -> None:
    """RaiseOnLog: the next log() raises an ExceptionGroup holding the MetranaApiError."""
    run = open_run(proxy, fast_retry, error_strategy="raise_on_log", close_strategy="CompleteAll")
    proxy.reject_status = 400
    run.log("loss", 1.0)
    wait_until(lambda: run._errors.raise_pending)
    with pytest.raises(ExceptionGroup) as group:
        run.log("loss", 2.0)
    error = group.value.exceptions[0]
    assert isinstance(error, metrana.MetranaApiError) and error.status == 400
    run.log("loss", 3.0)  # raised once; logging goes on
    run.close()


def test_raise_on_close_raises_from_close(proxy: FaultProxy, fast_retry: RetryPolicy) -> None:
    """RaiseOnClose: close() raises the collected errors after finishing."""
    run = open_run(proxy, fast_retry, error_strategy="RaiseOnClose", close_strategy="CompleteAll")
    proxy.reject_status = 422
    run.log("loss", 1.0)
    with pytest.raises(ExceptionGroup) as group:
        run.close()
    assert [getattr(e, "status", None) for e in group.value.exceptions] == [422]
    assert run.get_metrics().rejected == 1


@pytest.mark.parametrize("strategy", ["Silent", "Warn"])
def test_silent_says_nothing_but_counts(proxy: FaultProxy, fast_retry: RetryPolicy,
                                        loguru_messages: list[str], strategy: str) -> None:
    """Silent: the refusal is not printed (at a log level that shows warnings, where Warn
    prints it once); the counters and the close summary still tell."""
    run = open_run(proxy, fast_retry, error_strategy=strategy, close_strategy="CompleteAll",
                   log_level="Success")
    proxy.reject_status = 400
    run.log("loss", 1.0)
    run.log("acc", 1.0)
    metrics = run.close()
    assert (metrics.rejected, metrics.errors) == (2, 2)
    said = [m for m in loguru_messages if "metrana:" in m]
    refusals = [m for m in said if "HTTP 400" in m]
    assert len(refusals) == (0 if strategy == "Silent" else 1)
    assert [m for m in said if m not in refusals] == [
        m for m in said if m.startswith("WARNING metrana: closed run")]
    assert len(said) == len(refusals) + 1


def test_each_series_step_mistake_is_named(live_server: ServerInfo,
                                           loguru_messages: list[str]) -> None:
    """Warn (the default): two series with different step mistakes get a warning each, and
    a repeat of the first mistake does not print again."""
    with metrana.session(workspace_name="ws", project_name="proj", run_name="step-mistakes",
                         ingestion_url=live_server.url) as run:
        run.log("loss", 1.0, step=10)
        run.log("loss", 2.0, step=5)
        run.log("loss", 2.5, step=4)
        run.log("acc", 1.0)
        run.log("acc", 2.0, step=1)
    said = [m for m in loguru_messages if "series " in m]
    assert said == [
        "WARNING metrana: series loss/ML_STEP: step 5 does not increase (last step was 10); "
        "manual steps must strictly increase; point dropped (further errors in this series are "
        "counted in get_metrics())\n",
        "WARNING metrana: series acc/ML_STEP: got manual step 1 in a series with automatic "
        "steps; point dropped (further errors in this series are counted in get_metrics())\n"]
    assert run.get_metrics().invalid == 3


def test_step_errors_follow_the_error_strategy(proxy: FaultProxy, fast_retry: RetryPolicy,
                                               live_server: ServerInfo) -> None:
    """A step going backwards is a MetranaMetricStepError via the error strategy; the good
    points of the series still arrive."""
    run = open_run(proxy, fast_retry, error_strategy="RaiseOnClose", close_strategy="CompleteAll")
    run.log("loss", 1.0, step=10)
    run.log("loss", 2.0, step=5)
    run.log("loss", 3.0, step=11)
    run.log("acc", 1.0)
    run.log("acc", 2.0, step=1)
    with pytest.raises(ExceptionGroup) as group:
        run.close()
    messages = [str(e) for e in group.value.exceptions]
    assert any("step 5 does not increase (last step was 10)" in m for m in messages)
    assert any("manual step 1 in a series with automatic steps" in m for m in messages)
    assert run.get_metrics().invalid == 2
    assert stored_count(live_server, run.run_name) == 3

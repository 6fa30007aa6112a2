"""No silent loss on the paths users actually take: defaults, offline mode, resumed runs,
threads, worker processes, bad values and refusals — every point stored exactly once, or
counted in a drop field, read back from a real ``metrana serve``."""

from __future__ import annotations

import multiprocessing
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

import metrana
from metrana._spool import decode_record, read_segment, run_spool_dir, segments
from metrana._transport import RetryPolicy
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import read_points, wait_until


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def stored_values(info: ServerInfo, run: str, series: str = "loss") -> list[float]:
    return [p["value"] for p in read_points(info, run).get(series, [])]


def stored_steps(info: ServerInfo, run: str, series: str = "loss") -> list[int]:
    return [p["step"] for p in read_points(info, run).get(series, [])]


def spooled_points(directory: Path) -> int:
    total = 0
    for segment in segments(directory):
        for record in read_segment(segment):
            assert isinstance(record, bytes), record
            _, series = decode_record(record)
            total += sum(len(points) for _, _, points in series)
    return total


def balanced(m: metrana.Metrics) -> bool:
    """The accounting rule of Metrics: every point logged is in exactly one place. ``pending``
    is what is left of ``logged`` after the others, so the sum holds by construction; what can
    fail is a point counted in two places at once: ``pending`` below zero."""
    return m.logged == (m.sent + m.spooled + m.pending + m.dropped_backpressure + m.discarded
                        + m.in_doubt + m.rejected + m.failed + m.invalid) and m.pending >= 0


# ------------------------------------------------------------ defaults that discarded data

def test_a_short_script_with_default_settings_delivers_every_point(
        any_live_server: ServerInfo) -> None:
    """The Quick start as written (no close_strategy): all 3,000 points arrive."""
    name = new_run()
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=any_live_server.url, config={"lr": 3e-4})
    for step in range(1000):
        metrana.log("loss", 1.0 / (step + 1))
        metrana.log({"accuracy": step / 1000, "lr": 3e-4})
    metrics = metrana.close()
    assert (metrics.sent, metrics.logged, metrics.discarded) == (3000, 3000, 0)
    points = read_points(any_live_server, name)
    assert {k: len(v) for k, v in points.items()} == {"loss": 1000, "accuracy": 1000, "lr": 1000}


def test_a_session_block_with_default_settings_delivers_its_points(
        live_server: ServerInfo) -> None:
    """``with metrana.session(...)`` logging two points: both arrive."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url) as run:
        run.log("loss", 0.5)
        run.log_rl_episode("return", 12.0, rl_step=100, env_id="env-0")
    assert run.get_metrics().sent == 2
    points = read_points(live_server, name)
    assert points["loss"][0]["value"] == 0.5 and points["return@env-0/None"][0]["value"] == 12.0


@pytest.mark.parametrize("strategy", ["CompletePending", "Immediate"])
def test_close_that_discards_says_which_setting_keeps_the_points(
        proxy: FaultProxy, fast_retry: RetryPolicy, loguru_messages: list[str],
        strategy: str) -> None:
    """Points discarded by an explicit CompletePending/Immediate close are counted, and the
    summary names close_strategy='CompleteAll' as what would have delivered them."""
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=proxy.url, retry=fast_retry, close_strategy=strategy,
                          batch_max_age=60)
    for i in range(500):
        run.log("loss", float(i))
    metrics = run.close()
    assert metrics.discarded == 500 and metrics.sent == 0 and balanced(metrics)
    summary = [m for m in loguru_messages if "closed run" in m]
    assert summary and summary[0].startswith("WARNING")
    assert f"500 points were discarded by close_strategy='{strategy}'" in summary[0]
    assert "close_strategy='CompleteAll' (the default) delivers them" in summary[0]


def test_immediate_close_counts_a_request_in_flight_as_in_doubt(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo) -> None:
    """A request cut off on the wire may have been stored: it is in_doubt, not discarded —
    and here the server did store it, after the client had gone."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, retry=fast_retry, close_strategy="Immediate")
    proxy.hold()
    for i in range(50):
        run.log("loss", float(i))
    assert proxy.arrived.wait(10)
    metrics = run.close()
    assert (metrics.in_doubt, metrics.discarded, metrics.sent) == (50, 0, 0)
    assert balanced(metrics)
    proxy.release()
    wait_until(lambda: len(stored_steps(live_server, name)) == 50)


# ------------------------------------------------------------------------ offline mode

@pytest.mark.parametrize("strategy", ["Immediate", "CompletePending", "CompleteAll"])
def test_offline_close_writes_every_point_to_disk_whatever_the_strategy(
        spool_root: Path, strategy: str) -> None:
    """In offline mode the disk is the destination: close never discards."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          mode="offline", close_strategy=strategy, log_level="Off")
    for i in range(120_000):
        run.log("loss", float(i))
    metrics = run.close()
    assert (metrics.spooled, metrics.discarded, metrics.logged) == (120_000, 0, 120_000)
    assert spooled_points(run_spool_dir(spool_root, "ws", "proj", name)) == 120_000


# ------------------------------------------------- resumed runs: session-relative steps

def test_each_session_of_a_run_appends_after_the_ones_before(
        any_live_server: ServerInfo, loguru_messages: list[str]) -> None:
    """Three sessions log 100 automatic steps each to the same series: 300 points stored,
    in session order, none overwritten; the resume is said at the default log level."""
    name = new_run()
    for session_index in range(3):
        with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                             ingestion_url=any_live_server.url) as run:
            for i in range(100):
                run.log("loss", float(session_index * 100 + i))
                run.log_rl_episode("return", float(session_index * 100 + i),
                                   rl_step=session_index * 100 + i, env_id="env-0")
        assert run.get_metrics().sent == 200
        assert run.resumed == (session_index > 0)
    assert stored_steps(any_live_server, name) == list(range(300))
    assert stored_values(any_live_server, name) == [float(i) for i in range(300)]
    episodes = read_points(any_live_server, name)["return@env-0/None"]
    assert [p["minor_step"] for p in episodes] == list(range(300))
    assert [p["value"] for p in episodes] == [float(i) for i in range(300)]
    resumed = [m for m in loguru_messages if "resuming run" in m]
    assert len(resumed) == 2 and resumed[0].startswith("SUCCESS")


def test_manual_steps_keep_their_meaning_across_sessions(any_live_server: ServerInfo) -> None:
    """A second session giving step= writes at exactly those steps."""
    name = new_run()
    for steps in (range(0, 50), range(50, 100)):
        with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                             ingestion_url=any_live_server.url) as run:
            for step in steps:
                run.log("loss", float(step), step=step)
    assert stored_steps(any_live_server, name) == list(range(100))


def test_an_offline_session_synced_twice_lands_once_after_the_earlier_session(
        any_live_server: ServerInfo, spool_root: Path) -> None:
    """Online session, then an offline one synced twice: every point once, in session order."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=any_live_server.url) as run:
        for i in range(100):
            run.log("loss", float(i))
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline") as offline:
        for i in range(100, 250):
            offline.log("loss", float(i))
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    copy = {p.name: p.read_bytes() for p in segments(directory)}
    assert metrana.sync(directory, ingestion_url=any_live_server.url).delivered == 150
    for file_name, data in copy.items():  # as if the first sync had crashed before deleting
        (directory / file_name).write_bytes(data)
    metrana.sync(directory, ingestion_url=any_live_server.url)
    assert stored_steps(any_live_server, name) == list(range(250))
    assert stored_values(any_live_server, name) == [float(i) for i in range(250)]


# ----------------------------------------------------------------------------- threads

def test_threads_using_new_names_at_once_store_every_point_and_balance_at_every_snapshot(
        any_live_server: ServerInfo) -> None:
    """8 threads, fresh metric names, a 1 µs switch interval: stored == logged, and every
    snapshot taken meanwhile balances and counts between what was done and what was begun."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=any_live_server.url)
    per_thread, names = 3_000, 20
    started = [0] * 8
    finished = [0] * 8
    snapshots: list[tuple[int, int, metrana.Metrics]] = []
    go = threading.Barrier(9)
    done = threading.Event()
    # Half-way, each worker waits until the watcher has taken more than ten snapshots: on a busy
    # machine the workers could otherwise finish before the watcher ever ran.
    watched = threading.Event()

    def worker(index: int) -> None:
        go.wait()
        for i in range(per_thread):
            if i == per_thread // 2:
                watched.wait(timeout=60)
            started[index] += 1
            run.log(f"m{i % names}", float(index * per_thread + i))
            finished[index] += 1

    def watcher() -> None:
        go.wait()
        while not done.is_set():
            low = sum(finished)
            metrics = run.get_metrics()
            snapshots.append((low, sum(started), metrics))
            if len(snapshots) > 10:
                watched.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        watch = threading.Thread(target=watcher)
        for t in [*threads, watch]:
            t.start()
        for t in threads:
            t.join()
        done.set()
        watch.join()
    finally:
        sys.setswitchinterval(old)
    metrics = run.close()
    assert metrics.sent == metrics.logged == 8 * per_thread
    assert len(snapshots) > 10
    for low, high, snapshot in snapshots:
        assert balanced(snapshot), snapshot
        assert low <= snapshot.logged <= high, (low, snapshot.logged, high)
    points = read_points(any_live_server, name)
    assert sorted(points) == sorted(f"m{i}" for i in range(names))
    values = sorted(p["value"] for series in points.values() for p in series)
    assert values == [float(v) for v in range(8 * per_thread)]
    for series in points.values():
        assert [p["step"] for p in series] == list(range(len(series)))


def test_every_snapshot_during_a_run_is_backed_by_the_server(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo) -> None:
    """Read while the run goes on (through an outage, the spool and its replay): at every
    snapshot each point is in exactly one place, nothing counted as `sent` is missing from the
    server, and what only grows (logged, sent, replayed) never shrinks."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, retry=fast_retry, log_level="Off")
    seen: list[tuple[metrana.Metrics, int]] = []
    done = threading.Event()

    def stored() -> int:
        response = httpx.get(f"{live_server.url}/api/runs/ws/proj/{name}")
        return sum(s["point_count"] for s in response.json()["series"])

    def watch() -> None:
        while not done.is_set():
            metrics = run.get_metrics()
            seen.append((metrics, stored()))  # the server read after the snapshot

    def snapshots_taken(count: int = 3) -> None:
        """Let the watcher look at this phase of the run (however fast the run is)."""
        target = len(seen) + count
        wait_until(lambda: len(seen) >= target)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for i in range(1000):
            run.log("loss", float(i))
        snapshots_taken()
        run.flush()
        snapshots_taken()
        proxy.fail_next(10**6, 503)
        for i in range(1000, 2000):
            run.log("loss", float(i))
        wait_until(lambda: run.get_metrics().spooled > 0)
        snapshots_taken()
        proxy.recover()
        for i in range(2000, 3000):
            run.log("loss", float(i))
        snapshots_taken()
        final = run.close()
    finally:
        done.set()
        watcher.join()
    assert (final.sent, final.spooled, stored()) == (3000, 0, 3000)
    assert final.replayed > 0
    for metrics, on_server in seen:
        assert balanced(metrics), metrics
        assert metrics.sent <= on_server, (metrics, on_server)
    for (before, _), (after, _) in zip(seen, seen[1:], strict=False):
        assert (before.logged, before.sent, before.replayed) <= (after.logged, after.sent,
                                                                  after.replayed)
        assert before.sent <= after.sent and before.replayed <= after.replayed


# ------------------------------------------------------------------- worker processes

def _log_task(task: int, flush: bool = False) -> int:
    for i in range(1000):
        metrana.log("loss", float(task * 1000 + i))
    if flush:
        metrana.flush()
    return task


def _fork_pool_close_join(url: str, name: str) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    context = multiprocessing.get_context("fork")
    pool = context.Pool(2)
    assert sorted(pool.map(_log_task, range(4))) == [0, 1, 2, 3]
    pool.close()
    pool.join()
    metrana.close()


def _fork_pool_terminate_with_flush(url: str, name: str) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        assert sorted(pool.starmap(_log_task, [(t, True) for t in range(4)])) == [0, 1, 2, 3]
    metrana.close()


def _fork_process_without_close(url: str, name: str) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_log_task, args=(t,)) for t in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0
    metrana.close()


def _spawned_task(url: str, name: str, task: int) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    _log_task(task)  # and no close(): the interpreter's exit delivers


def _spawn_process_without_close(url: str, name: str) -> None:
    context = multiprocessing.get_context("spawn")
    children = [context.Process(target=_spawned_task, args=(url, name, t)) for t in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join()
        assert child.exitcode == 0


@pytest.mark.parametrize("scenario", [_fork_pool_close_join, _fork_pool_terminate_with_flush,
                                      _fork_process_without_close, _spawn_process_without_close])
def test_points_logged_in_worker_processes_arrive(live_server: ServerInfo, scenario: Any,
                                                  tmp_path: Path) -> None:
    """Pool (fork) with close+join, ``with Pool`` when each task flushes, Process (fork and
    spawn) without close(): all 4 x 1,000 points are stored, each worker in its own session."""
    name = new_run()
    runner = multiprocessing.get_context("spawn").Process(
        target=scenario, args=(live_server.url, name))
    runner.start()
    runner.join(90)
    assert runner.exitcode == 0
    values = stored_values(live_server, name)
    assert sorted(values) == [float(v) for v in range(4000)]


def _child_logs() -> None:
    for i in range(50):
        metrana.log("loss", 1000.0 + i)  # the inherited run; no close(): the exit delivers


def _fork_after_logging(url: str, name: str) -> None:
    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    for i in range(100):
        metrana.log("loss", float(i))
    metrana.flush()
    child = multiprocessing.get_context("fork").Process(target=_child_logs)
    child.start()
    child.join()
    assert child.exitcode == 0
    metrana.close()


def test_a_forked_childs_points_go_after_the_parents(live_server: ServerInfo) -> None:
    """The parent logs steps 0..99 and flushes; a forked child logs 50 points through the
    inherited run: it is its own session, so its points are stored after the parent's
    (steps 100..149), none lost to the parent's steps, none overwriting them."""
    name = new_run()
    runner = multiprocessing.get_context("spawn").Process(
        target=_fork_after_logging, args=(live_server.url, name))
    runner.start()
    runner.join(90)
    assert runner.exitcode == 0
    points = read_points(live_server, name)["loss"]
    assert [(p["step"], p["value"]) for p in points] == (
        [(i, float(i)) for i in range(100)] + [(100 + i, 1000.0 + i) for i in range(50)])


# --------------------------------------------------------------- bad values, refusals

@pytest.mark.parametrize("call", [
    lambda: metrana.log("loss", 1.0, step=2**63),
    lambda: metrana.log({"loss": 1.0}, step=2**63),
    lambda: metrana.log("loss", [1.0, 2.0], step=[0, 2**63]),
    lambda: metrana.log_rl_episode("return", 1.0, rl_step=2**63),
    lambda: metrana.log_rl_episode("return", 1.0, rl_step=1, episode=2**63),
    lambda: metrana.log_rl_environment_step("r", 1.0, rl_step=1, env_step=2**63),
    lambda: metrana.log_rl_environment_step("r", 1.0, rl_step=2**64),
    lambda: metrana.log("loss", 1.0, timestamp=2**63),
    lambda: metrana.log("loss", 1.0, timestamp=253_402_300_799 * 10**9),
])
def test_steps_and_timestamps_the_server_cannot_store_are_refused_at_the_call_site(
        live_server: ServerInfo, call: Any) -> None:
    """ValueError from log() itself, naming the argument; nothing else is lost."""
    name = new_run()
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url)
    metrana.log("loss", 0.5)
    with pytest.raises(ValueError, match=r"step|timestamp|episode"):
        call()
    metrana.log("loss", 0.25)
    metrics = metrana.close()
    assert metrics.sent == metrics.logged == 2


@pytest.mark.parametrize("call", [
    lambda: metrana.log("lo\udcffss", 1.0),
    lambda: metrana.log("loss", 1.0, labels={"k": "v\ud800"}),
    lambda: metrana.log("loss", 1.0, labels={"k\udc80": "v"}),
    lambda: metrana.log_rl_episode("return", 1.0, rl_step=1, env_id="env\udcff"),
])
def test_text_that_is_not_valid_utf8_is_refused_at_the_call_site(
        live_server: ServerInfo, call: Any) -> None:
    """A lone surrogate (a wrongly decoded byte string) cannot be sent: ValueError at once."""
    metrana.init(workspace_name="ws", project_name="proj", run_name=new_run(),
                 ingestion_url=live_server.url)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        call()
    metrana.log("loss", 0.5)
    assert metrana.close().sent == 1


def test_a_refused_point_costs_only_itself(proxy: FaultProxy, fast_retry: RetryPolicy,
                                           live_server: ServerInfo) -> None:
    """The service refuses any request holding one bad value: the batch is split until that
    point is alone; the 9,999 others are stored, one point is rejected and reported."""
    name = new_run()
    proxy.reject_if = (422, lambda body: b"\"floatValue\":-1.5}" in body)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, retry=fast_retry, batch_max_age=60,
                          error_strategy="RaiseOnClose")
    for i in range(10_000):
        run.log("loss", -1.5 if i == 4321 else float(i))
        run.log("acc", float(i))
    with pytest.raises(Exception) as raised:
        run.close()
    metrics = run.get_metrics()
    assert (metrics.sent, metrics.rejected) == (19_999, 1)
    assert "HTTP 422" in str(raised.value.exceptions[0])  # type: ignore[attr-defined]
    assert stored_steps(live_server, name) == [s for s in range(10_000) if s != 4321]
    assert len(stored_steps(live_server, name, "acc")) == 10_000


def test_a_refused_spool_record_costs_only_its_bad_point_and_sync_finishes(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path) -> None:
    """Replay isolates a refused point exactly as live sending does; sync ends (exit 0 with
    the refusal reported as an error line, exit 1) and the segment is gone."""
    from metrana._cli import main as cli

    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", log_level="Off") as run:
        for i in range(3000):
            run.log("loss", -1.5 if i == 1234 else float(i))
    proxy.reject_if = (422, lambda body: b"\"floatValue\":-1.5}" in body)
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    report = metrana.sync(directory, ingestion_url=proxy.url)
    assert (report.delivered, report.rejected) == (2999, 1)
    assert segments(directory) == []
    assert stored_steps(live_server, name) == [s for s in range(3000) if s != 1234]
    assert cli(["sync", str(directory), "--url", proxy.url]) == 0  # nothing left


def test_sync_stops_on_a_transient_failure_keeps_the_segment_and_exits_non_zero(
        proxy: FaultProxy, spool_root: Path, live_server: ServerInfo) -> None:
    """A service that answers 503 to every update: sync terminates, says so, keeps the data."""
    from metrana._cli import main as cli

    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", log_level="Off") as run:
        for i in range(500):
            run.log("loss", float(i))
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    before = [p.name for p in segments(directory)]
    proxy.reject_status = 503
    report = metrana.sync(directory, ingestion_url=proxy.url,
                          retry=RetryPolicy(initial=0.01, max_delay=0.02, max_attempts=3))
    assert report.delivered == 0 and report.errors
    assert "HTTP 503" in report.errors[0]
    assert [p.name for p in segments(directory)] == before
    proxy.reject_status = None
    assert cli(["sync", str(directory), "--url", live_server.url]) == 0
    assert stored_steps(live_server, name) == list(range(500))


def test_a_poison_record_answered_with_500_is_not_retried_forever(
        proxy: FaultProxy, fast_retry: RetryPolicy, live_server: ServerInfo,
        spool_root: Path) -> None:
    """A service that fails one request with 500 every time while answering others: the
    recovery actor rejects that request's points (reported) and delivers the rest."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", log_level="Off") as run:
        for i in range(300):
            run.log("loss", -1.5 if i == 7 else float(i))
        run.flush()
        for i in range(300, 600):
            run.log("loss", float(i))
    proxy.reject_if = (500, lambda body: b"\"floatValue\":-1.5}" in body)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, retry=fast_retry, log_level="Off")
    run.log("loss", 600.0)
    metrics = run.close()
    # 599 of the earlier session's points, and this session's one (it queued behind them)
    assert (metrics.sent, metrics.replayed, metrics.errors) == (1, 600, 1)
    assert stored_values(live_server, name) == [float(i) for i in range(601) if i != 7]
    assert segments(run_spool_dir(spool_root, "ws", "proj", name)) == []


def test_server_answers_4xx_naming_the_path_for_values_it_cannot_store(
        live_server: ServerInfo) -> None:
    """A year-1 timestamp or a 2**64 step: 4xx with the path, never 500."""
    name = new_run()
    with httpx.Client(base_url=live_server.url) as client:
        client.post("/v1/runs", json={"run": {"workspace": "ws", "project": "proj",
                                              "runName": name},
                                      "createProjectIfMissing": True}).raise_for_status()
        for point, field in (({"step": "1", "timestamp": "0001-01-01T00:00:00Z",
                               "floatValue": 1.0}, "timestamp"),
                             ({"step": str(2**64 - 1), "floatValue": 1.0}, "step")):
            response = client.post("/v1/runs:update", json={"runUpdates": [{
                "workspace": "ws", "project": "proj", "runName": name,
                "series": [{"metricName": "x", "scale": "ML_STEP", "points": [point]}]}]})
            assert response.status_code == 422
            assert f"runUpdates[0].series[0].points[0].{field}" in response.json()["message"]
        for query in ("limit=99999999999999999999999", "start=-99999999999999999999999"):
            detail = client.get(f"/api/runs/ws/proj/{name}").json()
            assert detail["series"] == []
            response = client.get(f"/api/runs/ws/proj/{name}/series/1/points?{query}")
            assert response.status_code in (400, 404)


# ------------------------------------------------------------------- the spool on disk

def test_spool_directories_are_one_to_one_and_bounded(spool_root: Path) -> None:
    """Names that escaped alike get their own directories; a 300-character name works."""
    a = run_spool_dir(spool_root, "ws", "proj", "exp AC")
    b = run_spool_dir(spool_root, "ws", "proj", "exp€")
    assert a != b
    long_name = "r" * 300
    with metrana.session(workspace_name="ws", project_name="proj", run_name=long_name,
                         mode="offline", log_level="Off") as run:
        run.log("loss", 1.0)
    directory = run_spool_dir(spool_root, "ws", "proj", long_name)
    assert all(len(part) <= 64 for part in directory.relative_to(spool_root).parts)
    assert spooled_points(directory) == 1
    for run_name in ("exp AC", "exp€"):
        with metrana.session(workspace_name="ws", project_name="proj", run_name=run_name,
                             mode="offline", log_level="Off") as run:
            run.log("loss", 2.0 if run_name == "exp€" else 3.0)
    assert spooled_points(a) == 1 and spooled_points(b) == 1


_SHORT_WRITE = r'''
import os, resource, signal, sys
from pathlib import Path
from metrana._spool import SpoolWriter, read_segment
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
directory = Path(sys.argv[1])
writer = SpoolWriter(directory)
record = b"x" * 1000
ok = failed = 0
for i in range(30):
    if i == 10:  # the disk "fills up" in the middle of a record
        resource.setrlimit(resource.RLIMIT_FSIZE, (ok * 1008 + 500, resource.RLIM_INFINITY))
    if i == 20:  # ...and has room again
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    try:
        writer.append(record + str(i).encode())
        ok += 1
    except OSError:
        failed += 1
writer.close()
readable = [r for p in sorted(directory.glob("*.seg")) for r in read_segment(p)]
print(ok, failed, sum(isinstance(r, bytes) for r in readable), len(readable))
'''


def test_a_short_write_never_hides_records_written_after_it(tmp_path: Path) -> None:
    """A real short write (RLIMIT_FSIZE mid-record): records that counted are all readable,
    the ones after the failure too; nothing unreadable is left behind."""
    import subprocess

    out = subprocess.run([sys.executable, "-c", _SHORT_WRITE, str(tmp_path / "spool")],
                         capture_output=True, text=True, check=True).stdout.split()
    ok, failed, readable, total = map(int, out)
    assert failed == 10 and ok == 20
    assert readable == total == ok


# ---------------------------------------------------------------- a service not there

def test_nothing_listening_is_said_at_once_and_close_spools_without_waiting(
        spool_root: Path, loguru_messages: list[str]) -> None:
    """init() returns at once naming the URL and "connection refused" (and, for a loopback
    URL, `metrana serve`); close() spools everything instead of waiting out close_timeout
    (600 s here, far beyond the test's own timeout) and prints the sync command."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=url, close_timeout=600)
    warning = [m for m in loguru_messages if "cannot reach" in m]
    assert warning and url in warning[0] and "connection refused" in warning[0]
    assert "metrana serve" in warning[0]
    for i in range(1000):
        run.log("loss", float(i))
    metrics = run.close()
    assert (metrics.spooled, metrics.discarded, metrics.sent) == (1000, 0, 0)
    assert any("metrana sync" in m for m in loguru_messages if "closed run" in m)


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_server_that_is_not_metrana_is_an_error_from_init(proxy: FaultProxy,
                                                             status: int) -> None:
    """Something else answers POST /v1/runs with 404/405/501: init() says this URL does not
    look like a Metrana ingestion service, at once (these are not retried)."""
    proxy.fail_next(1, status)
    with pytest.raises(metrana.MetranaApiError, match="does not look like a Metrana") as raised:
        metrana.init(workspace_name="ws", project_name="proj", run_name=new_run(),
                     ingestion_url=proxy.url)
    assert f"HTTP {status}" in str(raised.value) and "without /v1" in str(raised.value)


def test_replay_merges_spooled_records_into_full_size_requests(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path) -> None:
    """50 records of 100 points are replayed in a handful of requests, not 50."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", log_level="Off") as run:
        for i in range(5000):
            run.log("loss", float(i))
            if i % 100 == 99:
                run.flush()
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    before = proxy.count("/v1/runs:update")
    metrana.sync(directory, ingestion_url=proxy.url)
    assert proxy.count("/v1/runs:update") - before <= 3  # config + 5,000 points in one request
    assert stored_steps(live_server, name) == list(range(5000))

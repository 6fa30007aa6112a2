"""Nothing lost: outages, crashes, offline runs, the spool and metrana sync — over real
sockets, real processes and real files."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import metrana
from metrana._cli import main as cli
from metrana._spool import read_manifest, read_segment, run_spool_dir, segments
from metrana._transport import RetryPolicy
from metrana.server import ServerInfo, Store
from tests.faults import FaultProxy
from tests.helpers import read_points, wait_until
from tests.support import unused_port

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def stored_steps(info: ServerInfo, run: str, series: str = "loss") -> list[int]:
    return [p["step"] for p in read_points(info, run).get(series, [])]


@pytest.fixture
def late_server(tmp_path: Path) -> Iterator[tuple[str, Callable[[], ServerInfo]]]:
    """A URL with nothing listening yet, and a function that starts the server there."""
    port = unused_port()
    procs: list[subprocess.Popen[str]] = []

    def start() -> ServerInfo:
        db = tmp_path / "late.sqlite3"
        proc = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", str(port),
                                 "--db", str(db)], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            if "listening on" in line:
                break
        return ServerInfo(url=f"http://127.0.0.1:{port}", db_path=db)

    yield f"http://127.0.0.1:{port}", start
    for proc in procs:
        proc.terminate()
        proc.communicate(timeout=30)


def test_server_down_at_start_then_up_every_point_arrives_in_order(
        late_server: tuple[str, Callable[[], ServerInfo]], fast_retry: RetryPolicy) -> None:
    """Nothing listens at init(): points are spooled; once the server starts, the run is
    created and every point arrives, in order."""
    url, start = late_server
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=url, close_strategy="CompleteAll", retry=fast_retry,
                          init_timeout=0.2, log_level="Warn")
    for i in range(500):
        run.log("loss", float(i))
    wait_until(lambda: run.get_metrics().spooled > 0)
    for i in range(500, 1000):
        run.log("loss", float(i))
    info = start()
    metrics = run.close()
    assert (metrics.sent, metrics.spooled, metrics.discarded) == (1000, 0, 0)
    assert metrics.replayed == 1000
    assert stored_steps(info, name) == list(range(1000))
    assert [p["value"] for p in read_points(info, name)["loss"]] == [float(i) for i in range(1000)]


def test_outage_longer_than_the_retry_budget_loses_nothing(
        proxy: FaultProxy, live_server: ServerInfo, fast_retry: RetryPolicy) -> None:
    """The service answers 503 for longer than the retry budget mid-run, then recovers:
    every point arrives once, each series in order."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, close_strategy="CompleteAll",
                          retry=fast_retry, log_level="Warn")
    for i in range(1000):
        run.log("loss", float(i))
        run.log("acc", float(i))
    run.flush()
    proxy.fail_next(10_000, 503)  # the service goes away
    for i in range(1000, 2000):
        run.log("loss", float(i))
    wait_until(lambda: run.get_metrics().spooled > 0)
    for i in range(2000, 3000):
        run.log("loss", float(i))
        run.log("acc", float(i - 1000))
    proxy.recover()  # ...and comes back
    metrics = run.close()
    assert (metrics.sent, metrics.spooled, metrics.discarded, metrics.failed) == (5000, 0, 0, 0)
    assert stored_steps(live_server, name, "loss") == list(range(3000))
    assert [p["value"] for p in read_points(live_server, name)["loss"]] == [
        float(i) for i in range(3000)]
    assert stored_steps(live_server, name, "acc") == list(range(2000))


def test_flush_waits_for_acknowledgement_and_times_out_without_loss(
        proxy: FaultProxy, live_server: ServerInfo, fast_retry: RetryPolicy) -> None:
    """flush() returns once the server has the points; with the service stuck it times out,
    keeps the points, and they arrive later."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=proxy.url, close_strategy="CompleteAll",
                         retry=fast_retry) as run:
        for i in range(100):
            run.log("loss", float(i))
        run.flush()
        assert stored_steps(live_server, name) == list(range(100))  # no waiting needed
        proxy.hold()
        run.log("loss", 100.0)
        with pytest.raises(metrana.MetranaFlushTimeoutError, match="nothing was dropped"):
            run.flush(timeout=0.2)
        proxy.release()
        run.flush()
    assert stored_steps(live_server, name) == list(range(101))


CHILD = """
import sys, metrana
from metrana._transport import RetryPolicy
metrana.init(workspace_name="ws", project_name="proj", run_name={name!r},
             ingestion_url={url!r}, retry=RetryPolicy(0.01, 1.5, 0.05, 4), init_timeout=1)
for i in range(100_000):
    metrana.log("loss", float(i))
metrana.flush()
print("flushed", metrana.get_metrics().spooled, flush=True)
i = 100_000
while True:
    metrana.log("loss", float(i))
    i += 1
"""


def test_sigkill_after_flush_loses_nothing_flushed(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path, tmp_path: Path) -> None:
    """A child logs 100,000 points during an outage, flushes (so they are durable on disk),
    keeps logging, and is SIGKILLed. The next init() of the run delivers the spool."""
    name = new_run()
    proxy.reject_status = None
    proxy.fail_next(1_000_000, 503)
    script = tmp_path / "child.py"
    script.write_text(CHILD.format(name=name, url=proxy.url))
    env = {**os.environ, "METRANA_SPOOL_DIR": str(spool_root), "METRANA_LOG_LEVEL": "Off"}
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             env=env)
    assert child.stdout is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    assert line.startswith("flushed")
    # Durable before the kill: every flushed point is in an intact spool record.
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    on_disk: list[int] = []
    from metrana._spool import decode_record
    for segment in segments(directory):
        for record in read_segment(segment):
            if isinstance(record, bytes):  # a record torn by the kill is not counted
                for _key, _manual, points in decode_record(record)[1]:
                    on_disk += [p[0] for p in points]
    assert on_disk[:100_000] == list(range(100_000))
    proxy.recover()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url, close_strategy="CompleteAll") as run:
        pass
    assert run.get_metrics().replayed == len(on_disk)
    assert stored_steps(live_server, name) == sorted(on_disk) == list(range(len(on_disk)))
    assert segments(directory) == []


def run_name_of(directory: Path) -> str:
    manifest = read_manifest(directory)
    assert manifest is not None
    return str(manifest["run_name"])


def offline_run(spool_root: Path, points: int, flush_every: int | None = None) -> Path:
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", close_strategy="CompleteAll") as run:
        for i in range(points):
            run.log("loss", float(i))
            if flush_every and (i + 1) % flush_every == 0:
                run.flush()
    metrics = run.get_metrics()
    assert (metrics.spooled, metrics.sent, metrics.requests) == (points, 0, 0)
    return run_spool_dir(spool_root, "ws", "proj", name)


def test_offline_run_then_sync_twice_stores_each_point_once(
        spool_root: Path, live_server: ServerInfo) -> None:
    """mode=offline needs no key and no network; `metrana sync` twice (and again after a
    simulated crash mid-sync) stores every point exactly once. A delivered run's directory,
    and the ones above it left empty, are removed (the spool root stays)."""
    directory = offline_run(spool_root, 100_000)
    name = run_name_of(directory)  # read before sync removes the delivered run's manifest
    backup = spool_root.parent / "backup"
    shutil.copytree(directory, backup)
    assert cli(["sync", str(spool_root), "--url", live_server.url]) == 0
    assert not directory.exists() and spool_root.is_dir() and list(spool_root.iterdir()) == []
    assert cli(["sync", str(spool_root), "--url", live_server.url]) == 0  # nothing left: no-op
    shutil.copytree(backup, directory)  # as if the first sync had crashed before deleting
    shutil.rmtree(backup)
    report = metrana.sync(directory, ingestion_url=live_server.url)
    assert report.delivered == 100_000
    assert stored_steps(live_server, name) == list(range(100_000))


def run_status(info: ServerInfo, run: str) -> str:
    with httpx.Client(base_url=info.url) as client:
        return str(client.get(f"/api/runs/ws/proj/{run}").json()["status"])


def test_a_run_whose_points_wait_in_the_spool_shows_finished_only_once_synced(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path) -> None:
    """A session closes with points left in the spool (the service stayed busy past
    close_timeout): the run is not marked finished — the close is recorded in the spool
    instead. `metrana sync` delivers the points, then the close: the run shows finished, and
    the emptied spool directories are gone (the spool root stays)."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=proxy.url, log_level="Off") as run:
        run.log("loss", 0.0)
        run.flush()
        proxy.reject_status = 503
        for i in range(1, 100):
            run.log("loss", float(i))
        metrics = run.close(timeout=1)
    assert (metrics.sent, metrics.spooled) == (1, 99)
    directory = run_spool_dir(spool_root, "ws", "proj", name)
    assert (read_manifest(directory) or {}).get("closed") is True
    assert run_status(live_server, name) != "finished"
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert (report.delivered, report.errors) == (99, ())
    assert stored_steps(live_server, name) == list(range(100))
    assert run_status(live_server, name) == "finished"
    assert not directory.exists() and list(spool_root.iterdir()) == []


def test_an_offline_run_synced_shows_finished(spool_root: Path,
                                              live_server: ServerInfo) -> None:
    """An offline run's close is recorded with its points; sync delivers both."""
    directory = offline_run(spool_root, 100)
    name = run_name_of(directory)
    assert cli(["sync", str(spool_root), "--url", live_server.url]) == 0
    assert run_status(live_server, name) == "finished"


def test_sync_without_a_key_for_a_remote_service_fails_at_once(spool_root: Path,
                                                               live_server: ServerInfo) -> None:
    """An offline run logged without ingestion_url belongs to the hosted service. `metrana
    sync` with neither --url nor an API key fails at once, as init() would, saying what to
    pass (it used to retry for 45 s and then report "synced 0 run(s)"); nothing is touched.
    With --url (a trailing /v1 is fine) it reports each run as it goes."""
    directory = offline_run(spool_root, 1000)
    name = run_name_of(directory)
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "metrana", "sync"], capture_output=True,
                          text=True, timeout=60)
    assert time.monotonic() - started < 20  # no retries: the check comes before any request
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "no API key to send spooled points to https://" in done.stderr
    assert "--api-key" in done.stderr and "METRANA_API_KEY" in done.stderr
    assert "--url" in done.stderr
    assert len(segments(directory)) == 1
    with pytest.raises(metrana.NoMetranaApiKeyError):
        metrana.sync(spool_root)

    done = subprocess.run([sys.executable, "-m", "metrana", "sync", "--url",
                           live_server.url + "/v1/"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    run = f"ws/proj/{name}"
    assert f"metrana sync: {run}: sending 1 spool segment(s) to {live_server.url} ..." in done.stderr
    assert f"metrana sync: {run}: 1,000 points delivered, 0 rejected" in done.stderr
    assert done.stdout.startswith("synced 1 run(s): 1,000 points delivered")
    assert stored_steps(live_server, name) == list(range(1000))
    done = subprocess.run([sys.executable, "-m", "metrana", "sync", "--url", live_server.url],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("nothing to sync: no spooled points")


def test_damaged_segment_delivers_intact_records_and_reports(
        spool_root: Path, live_server: ServerInfo) -> None:
    """A flipped byte skips that record; a torn tail skips the rest; the others arrive."""
    directory = offline_run(spool_root, 1000, flush_every=100)  # ten records of 100 points
    name = run_name_of(directory)
    (segment,) = segments(directory)
    data = bytearray(segment.read_bytes())
    offsets = [m.start() for m in re.finditer(rb'\{"session"', bytes(data))]
    assert len(offsets) == 10
    data[offsets[3] + 20] ^= 0x01  # corrupt the 4th record's payload
    segment.write_bytes(bytes(data[: offsets[9] + 30]))  # tear the last record
    report = metrana.sync(directory, ingestion_url=live_server.url)
    assert report.delivered == 800 and report.damaged_records == 2
    assert any("checksum" in e for e in report.errors)
    assert any("torn" in e for e in report.errors)
    steps = stored_steps(live_server, name)
    assert steps == [s for s in range(900) if not 300 <= s < 400]


def test_spool_full_is_reported_and_the_loop_goes_on(
        proxy: FaultProxy, fast_retry: RetryPolicy, spool_root: Path) -> None:
    """Past spool_max_bytes: the error strategy is told, later batches count as failed, what
    is already on disk is untouched, and log() never raises."""
    proxy.fail_next(1_000_000, 503)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=proxy.url, retry=fast_retry, spool_max_bytes=20_000,
                          error_strategy="RaiseOnClose", close_strategy="CompleteAll",
                          close_timeout=1, init_timeout=0.1, log_level="Off")
    for i in range(200):
        run.log("loss", float(i))
    run.flush()
    directory = run_spool_dir(spool_root, "ws", "proj", run.run_name)
    before = {p: p.read_bytes() for p in segments(directory)}
    for i in range(200, 20_000):
        run.log("loss", float(i))
    run.flush()
    assert {p: p.read_bytes() for p in segments(directory) if p in before} == before
    with pytest.raises(ExceptionGroup) as group:
        run.close()
    assert any(isinstance(e, metrana.MetranaSpoolError) and "spool_max_bytes" in str(e)
               for e in group.value.exceptions)
    metrics = run.get_metrics()
    assert metrics.spooled == 200 and metrics.failed == 19_800


def test_unwritable_spool_is_reported_and_the_loop_goes_on(
        proxy: FaultProxy, fast_retry: RetryPolicy, tmp_path: Path,
        loguru_messages: list[str]) -> None:
    """A spool directory that cannot be created: a clear warning, points counted as failed."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    proxy.fail_next(1_000_000, 503)
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=proxy.url, retry=fast_retry,
                          spool_dir=blocker / "spool", close_strategy="CompleteAll",
                          close_timeout=1, init_timeout=0.1)
    for i in range(100):
        run.log("loss", float(i))
    metrics = run.close()
    assert metrics.failed == 100 and metrics.spooled == 0
    assert any("could be neither delivered nor spooled" in m for m in loguru_messages)


def test_close_summary_says_where_spooled_points_wait(
        late_server: tuple[str, Callable[[], ServerInfo]], fast_retry: RetryPolicy,
        loguru_messages: list[str]) -> None:
    """A close that leaves points on disk warns with the directory and how to deliver them."""
    url, _ = late_server
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=url, retry=fast_retry, init_timeout=0.1,
                          close_strategy="CompleteAll", close_timeout=0.5)
    run.log("loss", 1.0)
    metrics = run.close()
    assert metrics.spooled == 1
    summary = [m for m in loguru_messages if "closed run" in m][0]
    assert summary.startswith("WARNING") and "metrana sync" in summary


def test_close_reports_progress_while_draining(proxy: FaultProxy, fast_retry: RetryPolicy,
                                               loguru_messages: list[str]) -> None:
    """A close that takes more than ~5 s says how far it has got (not as a warning: a slow
    service is not an error)."""
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=proxy.url, retry=fast_retry, close_strategy="CompleteAll")
    proxy.hold()
    run.log("loss", 1.0)
    done = threading.Event()
    def close() -> None:
        run.close()
        done.set()

    threading.Thread(target=close).start()
    wait_until(lambda: any("still pending" in m and m.startswith("SUCCESS")
                           for m in loguru_messages))
    proxy.release()
    assert done.wait(20)


INTERRUPTED = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the launcher did
import os, socket, threading, time, metrana
from metrana._transport import RetryPolicy
hole = socket.socket(); hole.bind(("127.0.0.1", 0)); hole.listen(64)  # accepts, never answers
url = "http://127.0.0.1:%d" % hole.getsockname()[1]
run = metrana.init(workspace_name="ws", project_name="proj", run_name="interrupted",
                   ingestion_url=url, init_timeout=0.2, close_strategy="CompleteAll",
                   log_level="Off")
for i in range(1000):
    metrana.log("loss", float(i))
def interrupt():
    while run.is_open:  # until close() has handed the request to the engine
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGINT)
threading.Thread(target=interrupt).start()
try:
    metrana.close(timeout=120)
except KeyboardInterrupt:
    print("interrupted", run.get_metrics().spooled, flush=True)
"""


def test_ctrl_c_during_close_spools_and_stops(tmp_path: Path, spool_root: Path,
                                              live_server: ServerInfo) -> None:
    """Ctrl-C while close() waits on a hung service: what is queued goes to the spool, close
    stops promptly and re-raises KeyboardInterrupt; sync delivers the points later."""
    script = tmp_path / "interrupted.py"
    script.write_text(textwrap.dedent(INTERRUPTED))
    env = {**os.environ, "METRANA_SPOOL_DIR": str(spool_root)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.stdout.strip() == "interrupted 1000", done.stderr
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert report.delivered == 1000
    store = Store(live_server.db_path)
    try:
        assert store.get_run("ws", "proj", "interrupted")["series"][0]["point_count"] == 1000
    finally:
        store.close()

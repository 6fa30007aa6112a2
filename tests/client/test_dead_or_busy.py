"""Refused is dead, slow is busy. Nothing listening on the URL is a definite answer: the
points go to the spool at once (durable within a second), ``flush()`` returns quickly with
all of them on disk, and ``metrana sync`` says so at once. A server that is there but slow is
waited for, at close too, until ``close_timeout``: everything it takes is delivered.

(Timeouts here are generous bounds that the old behaviour — ~49 s of retries against a
refused connection, a 2 s probe at close — could not meet; no test asserts a speed.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import metrana
from metrana._spool import run_spool_dir, segments
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import read_points
from tests.support import unused_port


def new_run() -> str:
    return f"dead-{uuid.uuid4().hex[:8]}"


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting is refused."""
    return f"http://127.0.0.1:{unused_port()}"


def stored(info: ServerInfo, run: str) -> list[float]:
    return [p["value"] for p in read_points(info, run).get("loss", [])]


def test_flush_against_a_refused_url_returns_with_every_point_in_the_spool(
        spool_root: Path) -> None:
    """init() and flush() against a URL that refuses connections: flush() returns with
    spooled == logged (within 20 s here; it used to retry for ~49 s first)."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=refused_url(), log_level="Off") as run:
        for i in range(1000):
            run.log("loss", float(i))
        run.flush(timeout=20)
        metrics = run.get_metrics()
        assert metrics.spooled == metrics.logged == 1000 and metrics.pending == 0
        assert segments(run_spool_dir(spool_root, "ws", "proj", name))
    assert run.get_metrics().spooled == 1000


CHILD = """
import sys, time, metrana
metrana.init(workspace_name="ws", project_name="proj", run_name=sys.argv[2],
             ingestion_url=sys.argv[1], log_level="Off")
for i in range(5000):
    metrana.log("loss", float(i))
print("logged", flush=True)
time.sleep(600)
"""


def test_sigkill_two_seconds_after_logging_to_a_refused_url_loses_nothing(
        live_server: ServerInfo, spool_root: Path, tmp_path: Path) -> None:
    """No flush(), no close(): 2 s after its last log() against a refused URL the process is
    SIGKILLed. Every point was already on disk; sync delivers all 5,000."""
    name = new_run()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), refused_url(), name],
                             stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "METRANA_SPOOL_DIR": str(spool_root)})
    assert child.stdout is not None
    assert child.stdout.readline() == "logged\n"
    time.sleep(2)  # the scenario itself: the bound under test, not a wait for a state
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=30)
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert (report.delivered, report.errors) == (5000, ())
    assert sorted(stored(live_server, name)) == [float(i) for i in range(5000)]


def test_sync_to_a_refused_url_fails_at_once_naming_it(spool_root: Path) -> None:
    """`metrana sync --url <refused>` exits 1 naming the URL and the reason (within 20 s here;
    it used to take 1 min 33 s), and leaves the spool as it was."""
    with metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                         mode="offline", log_level="Off") as run:
        run.log("loss", 1.0)
    url = refused_url()
    before = sorted(p.name for p in spool_root.rglob("*"))
    done = subprocess.run([sys.executable, "-m", "metrana", "sync", "--url", url],
                          capture_output=True, text=True, timeout=20,
                          env={**os.environ, "METRANA_SPOOL_DIR": str(spool_root)})
    assert done.returncode == 1
    assert f"cannot reach {url}/v1/runs: connection refused" in done.stderr
    assert sorted(p.name for p in spool_root.rglob("*")) == before


def test_a_slow_server_at_close_is_waited_for_and_gets_everything(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path) -> None:
    """The run resumes with an earlier session's spool to deliver (an outage from the start)
    through a server that holds every request 5 s. close(timeout=30) waits for it — its
    probes time out, which is busy, not gone — and everything is delivered, nothing left on
    disk (it used to give a 2 s probe, then spool everything)."""
    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", log_level="Off") as earlier:
        for i in range(300):
            earlier.log("loss", float(i))
    proxy.delay = 5.0
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          ingestion_url=proxy.url, log_level="Off", init_timeout=60)
    for i in range(300, 600):
        run.log("loss", float(i))
    metrics = run.close(timeout=30)
    assert (metrics.sent, metrics.spooled, metrics.logged) == (300, 0, 300)
    assert segments(run_spool_dir(spool_root, "ws", "proj", name)) == []
    proxy.delay = 0.0
    assert sorted(stored(live_server, name)) == [float(i) for i in range(600)]

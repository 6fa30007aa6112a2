"""Leaving a run: the close at process exit (bounded by min(close_timeout, 30) s) and Ctrl-C
during close (spool and stop; a second Ctrl-C abandons even that), in real processes against
a real server. The strategies' own outcomes in virtual time: tests/client/test_close.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

import metrana
from metrana._thread_session import ThreadSession
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import read_points


def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(("close_timeout", "bound"), [(600.0, 30.0), (2.5, 2.5)])
def test_the_at_exit_close_is_bounded_by_close_timeout_and_30_s(
        live_server: ServerInfo, close_timeout: float, bound: float) -> None:
    """A run left open at exit is closed with CompleteAll within min(close_timeout, 30) s."""
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=new_run(),
                          ingestion_url=live_server.url, close_timeout=close_timeout,
                          log_level="Off")
    assert isinstance(run, ThreadSession)
    calls: list[tuple[Any, ...]] = []
    real_close = run.close

    def close(timeout: float | None = None, *, strategy: Any = None) -> metrana.Metrics:
        calls.append((timeout, strategy))
        return real_close(timeout, strategy=strategy)

    run.close = close  # type: ignore[method-assign]
    run.log("loss", 1.0)
    run._close_at_exit()
    assert calls == [(bound, "CompleteAll")]
    assert run.get_metrics().sent == 1


AT_EXIT = """
import metrana
metrana.init(workspace_name="ws", project_name="proj", run_name={name!r}, ingestion_url={url!r},
             close_timeout=1)
print("ready", flush=True)
input()  # the test holds the service now
for i in range(100):
    metrana.log("loss", float(i))
print("logged", flush=True)
input()  # and lets the script end, without close()
"""


def test_a_run_left_open_at_exit_spools_what_a_hung_service_holds_within_close_timeout(
        proxy: FaultProxy, live_server: ServerInfo, spool_root: Path, tmp_path: Path) -> None:
    """A script ends without close() while the service holds its request: the exit warns,
    waits close_timeout (1 s), spools the points and exits; the spool delivers them later."""
    name = new_run()
    script = tmp_path / "train.py"
    script.write_text(AT_EXIT.format(name=name, url=proxy.url))
    env = {**os.environ, "METRANA_SPOOL_DIR": str(spool_root)}
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert child.stdout is not None and child.stdin is not None
    assert child.stdout.readline() == "ready\n"
    proxy.hold()
    child.stdin.write("\n")
    child.stdin.flush()
    assert child.stdout.readline() == "logged\n"
    assert proxy.arrived.wait(20)
    started = time.monotonic()
    _, stderr = child.communicate("\n", timeout=60)
    assert time.monotonic() - started < 1 + 10  # close_timeout, and nothing like 30 s
    assert child.returncode == 0, stderr
    assert f"run {name} was not closed; delivering what is queued (up to 1s)" in stderr
    assert f"closed run {name}: 0 of 100 points delivered, 100 spooled" in stderr
    proxy.release()
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert report.delivered == 100
    assert [p["value"] for p in read_points(live_server, name)["loss"]] == [
        float(i) for i in range(100)]


SECOND_INTERRUPT = """
import signal
signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever the launcher did
import os, socket, threading, time, metrana
import metrana._spool

hung = threading.Event()

def append(self, payload):  # a disk that stopped answering
    hung.set()
    threading.Event().wait()

metrana._spool.SpoolWriter.append = append
hole = socket.socket(); hole.bind(("127.0.0.1", 0)); hole.listen(64)  # accepts, never answers
run = metrana.init(workspace_name="ws", project_name="proj", run_name="twice",
                   ingestion_url="http://127.0.0.1:%d" % hole.getsockname()[1],
                   init_timeout=0.2, log_level="Warn")
for i in range(1000):
    metrana.log("loss", float(i))

def interrupt():
    while run.is_open:  # until close() has handed the request to the engine
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: spool what is left and stop...
    hung.wait()                          # ...but writing to the spool hangs
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C again: abandon even that

threading.Thread(target=interrupt, daemon=True).start()
started = time.monotonic()
try:
    metrana.close(timeout=120)
except KeyboardInterrupt:
    m = run.get_metrics()
    print("abandoned", round(time.monotonic() - started, 1), m.spooled, m.pending, flush=True)
"""


def test_a_second_ctrl_c_during_close_abandons_the_spooling(tmp_path: Path,
                                                            spool_root: Path) -> None:
    """Ctrl-C during close() spools and stops; a second Ctrl-C while that hangs (a disk that
    stopped answering) stops at once: KeyboardInterrupt, no wait for the engine's grace
    (10 s + 5 s), nothing counted as spooled that is not."""
    script = tmp_path / "twice.py"
    script.write_text(textwrap.dedent(SECOND_INTERRUPT))
    env = {**os.environ, "METRANA_SPOOL_DIR": str(spool_root)}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=60, env=env)
    word, seconds, spooled, pending = done.stdout.split()
    assert (word, spooled, pending) == ("abandoned", "0", "1000"), done.stderr
    assert float(seconds) < 10, done.stderr
    assert done.stderr.count("interrupted: writing undelivered points to the spool") == 1
    assert "did not stop in time" not in done.stderr

"""Running, finished, crashed: what a run's state says about its client, on both stores.

A real server (``metrana serve --heartbeat-timeout 2``) and real client processes: one keeps
its run ``running`` through an idle spell longer than the timeout by its heartbeats, is
killed, and the run becomes ``crashed``; a resume makes it ``running`` again and its close
``finished``. The state is what ``metrana runs``, the read API and ``metrana.query`` show.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import metrana
from metrana._cli import main
from metrana.query import AttrFilter, QueryClient
from tests.helpers import wait_until
from tests.support import start_serve, stop_serve

CLIENT = """
import sys, time, metrana
run = metrana.init(workspace_name="ws", project_name="p", run_name="r", ingestion_url=sys.argv[1],
                   heartbeat_interval=0.3, log_level="Off")
run.log("loss", 1.0)
run.flush()
print("ready", flush=True)
time.sleep(600)  # idle: only heartbeats from now on, until the test kills this process
"""


def _status(url: str) -> str:
    return str(httpx.get(f"{url}/api/runs/ws/p/r").json()["status"])


def test_a_killed_client_is_crashed_and_a_resume_running_then_finished(
        db_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server, url = start_serve(db_target, "--heartbeat-timeout", "2", capture_stderr=False)
    client = None
    try:
        script = tmp_path / "client.py"
        script.write_text(CLIENT)
        client = subprocess.Popen([sys.executable, str(script), url], stdout=subprocess.PIPE,
                                  text=True)
        assert client.stdout is not None and client.stdout.readline().strip() == "ready"
        # Idle for longer than the timeout: the heartbeats keep it running all along.
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 3.5:
            assert _status(url) == "running"
            time.sleep(0.1)
        client.kill()
        client.wait(timeout=30)
        wait_until(lambda: _status(url) == "crashed", timeout=20)
        for source in (["--url", url], ["--db", db_target]):
            assert main(["runs", *source]) == 0
            assert "ws/p/r" in capsys.readouterr().out.split("crashed")[0].splitlines()[-1]
        with QueryClient("ws", "p", url=url) as query:
            assert list(query.fetch_runs(status="crashed")["name"]) == ["r"]
            assert query.fetch_runs(status="running").empty
            assert list(query.fetch_runs(filter=AttrFilter("sys/status") == "crashed")["status"]
                        ) == ["crashed"]
        # A resume (a new session of the same run): running while open, finished once closed.
        with metrana.session(workspace_name="ws", project_name="p", run_name="r",
                             ingestion_url=url, log_level="Off") as run:
            run.log("loss", 0.5)
            run.flush()
            assert _status(url) == "running"
        assert _status(url) == "finished"
        with QueryClient("ws", "p", url=url) as query:
            assert list(query.fetch_runs(status="finished")["name"]) == ["r"]
            with pytest.raises(ValueError, match="status is one of running, finished, crashed"):
                query.fetch_runs(status="idle")
    finally:
        if client is not None:
            if client.poll() is None:
                client.kill()
            client.communicate(timeout=30)
        stop_serve(server)


def test_heartbeat_timeout_is_checked_on_the_command_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "metrana", "serve", "--db",
                           str(tmp_path / "x.sqlite3"), "--heartbeat-timeout", "0"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "--heartbeat-timeout: 0 must be more than 0 seconds" in done.stderr

"""End to end, as a user runs it: a training script in a git repository, logging to a real
``metrana serve``, with every default (context on, system metrics on); killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.client.test_run_context import make_repo
from tests.helpers import wait_until
from tests.support import start_serve, stop_serve

TRAIN = """
import sys, time, metrana
metrana.init(workspace_name="ws", project_name="e2e", run_name="train",
             ingestion_url=sys.argv[1], config={"lr": 0.01})
step = 0
while True:  # until killed
    metrana.log("loss", 1.0 / (step + 1))
    step += 1
    time.sleep(0.01)
"""


def test_a_killed_training_in_a_git_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    commit = make_repo(repo)
    (repo / "train_job.py").write_text(TRAIN)
    server, url = start_serve(tmp_path / "e2e.sqlite3", "--heartbeat-timeout", "2",
                              capture_stderr=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRANA_")}
    env.update({"METRANA_SPOOL_DIR": str(tmp_path / "spool"),
                "METRANA_SYSTEM_METRICS_INTERVAL": "0.5"})  # the default 15 s, shortened
    train = subprocess.Popen([sys.executable, "train_job.py", url], cwd=repo, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def detail() -> dict:  # type: ignore[type-arg]
            answer = httpx.get(f"{url}/api/runs/ws/e2e/train")
            return answer.json() if answer.status_code == 200 else {"series": [], "attributes": {}}

        def system_points() -> int:
            counts = [s["point_count"] for s in detail()["series"]
                      if s["metric_name"].startswith("system/")]
            return min(counts) if len(counts) >= 5 else 0

        wait_until(lambda: system_points() >= 3, timeout=60)  # a few intervals
        run = detail()
        assert run["attributes"]["context/git/commit"]["value"] == commit
        assert run["attributes"]["config/lr"]["value"] == 0.01
        assert run["status"] == "running"
        train.send_signal(signal.SIGKILL)
        train.wait(timeout=30)
        wait_until(lambda: detail()["status"] == "crashed", timeout=30)
    finally:
        if train.poll() is None:
            train.kill()
            train.wait(timeout=30)
        stop_serve(server)

"""A real 2-process DDP job (Lightning, gloo on CPU) where every rank uses the integrations:
only rank 0's data reaches the server, and the job ends (bounded by timeouts)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from metrana.server import ServerInfo
from tests.integrations.helpers import attributes, run_name, series

JOB = Path(__file__).with_name("ddp_job.py")


@pytest.mark.timeout(150)
def test_two_process_job_logs_from_rank_zero_only(live_server: ServerInfo, tmp_path: Path
                                                  ) -> None:
    pl_run, rl_run = run_name("ddp-pl"), run_name("ddp-rl")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("METRANA_", "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_"))}
    env["METRANA_SPOOL_DIR"] = str(tmp_path / "spool")
    # As the suite (tests/conftest.py): no context attributes or system series to count.
    env.update({"METRANA_CAPTURE_CONTEXT": "false", "METRANA_SYSTEM_METRICS_INTERVAL": "0"})
    result = subprocess.run([sys.executable, str(JOB), live_server.url, pl_run, rl_run],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "rank 0 done" in result.stdout and "rank 1 done" in result.stdout  # both really ran

    lightning = series(live_server, pl_run)
    names = {s["metric_name"] for s in lightning}
    assert names == {"train_loss", "rank0/marker", "epoch"}, names
    marker = next(s for s in lightning if s["metric_name"] == "rank0/marker")
    # 32 samples, 4 per batch, split over 2 ranks: 4 steps per epoch, 2 epochs
    assert [(p["step"], p["value"]) for p in marker["points"]] == [(i, 0.0) for i in range(8)]
    assert attributes(live_server, pl_run) == {"config/width": 4}

    rl = series(live_server, rl_run)
    names = {s["metric_name"] for s in rl}
    assert names == {"rank0/return", "rank0/length", "rank0/time",
                     "wrapper0/return", "wrapper0/length", "wrapper0/time"}, names
    returns = sorted(p["value"] for s in rl if s["metric_name"] == "rank0/return"
                     for p in s["points"])
    assert returns == [1.0, 2.0]
    assert sum(len(s["points"]) for s in rl if s["metric_name"] == "wrapper0/return") == 3

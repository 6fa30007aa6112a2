"""Many processes, one run: every process of a job (one orchestration id) that calls init()
with the same names writes the same run, whoever comes first; log_distributed's points are
kept per writer and served merged. Real processes against a real `metrana serve`, on SQLite
and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import numpy as np

from metrana.query import QueryClient
from metrana.server import ServerInfo

# A process of the job: ready, then waits for "go" on stdin so that all start together; logs
# log_distributed("loss", sin(rank + step)) for STEPS steps and log("throughput", ...), prints
# how it began (created, joined or resumed) and its close counters.
WORKER = """
import math, os, sys, metrana
url, name, steps, resume = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
print("ready", flush=True)
sys.stdin.readline()
try:
    run = metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                       ingestion_url=url, resume_strategy=resume,
                       log_level=os.environ.get("TEST_LOG_LEVEL", "Error"))
except metrana.MetranaRunAlreadyExistsError as exc:
    print("refused", type(exc).__name__, exc, flush=True)
    sys.exit(3)
rank = int(os.environ.get("RANK", "0"))
for step in range(steps):
    metrana.log_distributed("loss", math.sin(rank + step), step=step)
    metrana.log("throughput", float(rank * 1000 + step))
began = "joined" if run.joined else "resumed" if run.resumed else "created"
m = metrana.close()
print(began, run.logger_id, m.logged, m.sent, flush=True)
"""


def start_job(url: str, name: str, world: int, *, steps: int, env: dict[str, str],
              resume: str = "Never", ranks: bool = True) -> list[str]:
    """``world`` processes of one job, released at once; each one's last line of output."""
    procs = []
    for rank in range(world):
        penv = {**os.environ, **env}
        if ranks:
            penv.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, url, name, str(steps), resume], env=penv,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for proc in procs:  # all imported and waiting
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    for proc in procs:  # released together
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    lines = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 3), err
        lines.append(out.strip().splitlines()[-1])
    return lines


def run_answer(info: ServerInfo, name: str) -> dict[str, Any]:
    answer = httpx.get(f"{info.url}/api/runs/ws/proj/{name}", timeout=30).json()
    assert isinstance(answer, dict)
    return answer


def test_eight_processes_starting_at_once_create_the_run_once_and_all_join_it(
        any_live_server: ServerInfo) -> None:
    """8 processes of one job start together with resume_strategy="Never": exactly one
    creates the run, the 7 others join it (not refused, not a resume), and the run records
    the job's id."""
    name = f"job-{uuid.uuid4().hex[:8]}"
    lines = start_job(any_live_server.url, name, 8, steps=5,
                      env={"METRANA_ORCHESTRATION_ID": f"{name}-id"})
    began = sorted(line.split()[0] for line in lines)
    assert began == ["created"] + ["joined"] * 7
    assert sorted(line.split()[1] for line in lines) == [str(r) for r in range(8)]
    assert all(line.split()[2:] == ["10", "10"] for line in lines)
    run = run_answer(any_live_server, name)
    assert run["attributes"]["sys/orchestration_id"]["value"] == f"{name}-id"
    names = {(s["metric_name"], tuple(sorted(s["labels"].items()))) for s in run["series"]}
    assert names == ({("throughput", (("rank", str(r)),)) for r in range(8)}
                     | {("loss", (("writer", str(r)),)) for r in range(8)})


def test_another_jobs_run_is_refused_naming_both_jobs(any_live_server: ServerInfo) -> None:
    """A run created by job A, started again by job B: with resume_strategy="Never" every
    process of B is refused, the message naming both ids; "Allow" adds to it as a rerun."""
    name = f"rerun-{uuid.uuid4().hex[:8]}"
    assert [line.split()[0] for line in start_job(
        any_live_server.url, name, 1, steps=2, env={"SLURM_JOB_ID": "1001"},
        ranks=False)] == ["created"]
    refused = start_job(any_live_server.url, name, 2, steps=2,
                        env={"SLURM_JOB_ID": "2002"})
    for line in refused:
        assert line.startswith("refused MetranaOrchestrationIdMismatchError")
        assert "created by job 1001" in line and "belongs to job 2002" in line
    resumed = start_job(any_live_server.url, name, 1, steps=2, resume="Allow",
                        env={"SLURM_JOB_ID": "3003"}, ranks=False)
    assert resumed[0].split()[0] == "resumed"
    assert run_answer(any_live_server, name)["attributes"]["sys/orchestration_id"][
        "value"] == "1001"


def test_four_torchrun_workers_write_one_run_merged_per_step(
        any_live_server: ServerInfo) -> None:
    """The acceptance check: 4 processes with one TORCHELASTIC_RUN_ID each log_distributed
    "loss" for 1,000 steps and log "throughput": one run, 1,000 merged steps each of count 4
    with the mean across ranks, 4 rank= series of throughput, and the run finished once all
    four closed."""
    name = f"elastic-{uuid.uuid4().hex[:8]}"
    lines = start_job(any_live_server.url, name, 4, steps=1000,
                      env={"TORCHELASTIC_RUN_ID": f"rdzv-{name}"})
    assert sorted(line.split()[0] for line in lines) == ["created", "joined", "joined",
                                                         "joined"]
    with QueryClient("ws", "proj", url=any_live_server.url) as client:
        assert name in set(client.fetch_runs()["name"])
        merged = client.fetch_distributed_series(name, "loss")
        series = client.list_series(name)
    expected = np.sin(np.arange(4)[:, None] + np.arange(1000)[None, :])  # rank x step
    assert merged.index.tolist() == list(range(1000))
    assert merged["count"].tolist() == [4] * 1000
    np.testing.assert_allclose(merged["mean"], expected.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged["min"], expected.min(axis=0), rtol=1e-12)
    np.testing.assert_allclose(merged["max"], expected.max(axis=0), rtol=1e-12)
    assert sorted(merged.attrs["writers"]) == ["0", "1", "2", "3"]
    throughput = series[series["metric"] == "throughput"]
    assert sorted(labels["rank"] for labels in throughput["labels"]) == ["0", "1", "2", "3"]
    assert throughput["count"].tolist() == [1000] * 4
    assert run_answer(any_live_server, name)["status"] == "finished"


def test_a_writer_that_starts_again_adds_nothing_twice(any_live_server: ServerInfo) -> None:
    """A writer of the job restarted (a new process with the same logger_id) that logs the
    same steps again: each step is stored once per writer (the later points are refused as
    going before what the run has), and the merged count stays the number of writers."""
    name = f"again-{uuid.uuid4().hex[:8]}"
    env = {"METRANA_ORCHESTRATION_ID": name}
    start_job(any_live_server.url, name, 2, steps=20, env=env)
    again = start_job(any_live_server.url, name, 1, steps=20, ranks=False,  # rank 0 again
                      env={**env, "RANK": "0", "WORLD_SIZE": "2"})
    assert again[0].split()[:2] == ["joined", "0"]
    with QueryClient("ws", "proj", url=any_live_server.url) as client:
        merged = client.fetch_distributed_series(name, "loss")
    assert merged["count"].tolist() == [2] * 20


def test_each_close_summary_speaks_for_its_process_and_rank_zero_adds_the_run(
        live_server: ServerInfo) -> None:
    """Rank 1's summary counts its own points and says whose they are; rank 0, closing last,
    adds the run's total from the server: both processes' points, none still open."""
    name = f"summary-{uuid.uuid4().hex[:8]}"
    said = {}
    for rank in (1, 0):
        env = {**os.environ, "TORCHELASTIC_RUN_ID": name, "RANK": str(rank), "WORLD_SIZE": "2",
               "TEST_LOG_LEVEL": "Success"}
        result = subprocess.run([sys.executable, "-c", WORKER, live_server.url, name, "10",
                                 "Allow"], input="go\n", env=env, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        said[rank] = result.stderr
    assert f"closed run {name} (writer 1 of job {name}: this process's points): 20 of 20 " \
           "points delivered" in said[1]
    assert "the run holds" not in said[1]
    assert f"closed run {name} (writer 0 of job {name}: this process's points): 20 of 20 " \
           "points delivered" in said[0]
    assert f"the run holds 40 points from 2 processes of job {name} (0 still open)" in said[0]


FORKED = """
import multiprocessing, sys, metrana
metrana.init(workspace_name="ws", project_name="proj", run_name=sys.argv[2],
             ingestion_url=sys.argv[1], orchestration_id=sys.argv[2], logger_id="parent",
             log_level="Error")
metrana.log_distributed("loss", 1.0, step=0)

def child():
    metrana.log_distributed("loss", 3.0, step=0)

worker = multiprocessing.get_context("fork").Process(target=child)
worker.start()
worker.join()
print(worker.pid, flush=True)
metrana.close()
"""


def test_a_forked_worker_is_a_writer_of_its_own(live_server: ServerInfo) -> None:
    """A worker forked after init() logs log_distributed points as a writer of its own
    (its parent's logger_id and its pid), so parent and child both count at the step."""
    name = f"fork-{uuid.uuid4().hex[:8]}"
    result = subprocess.run([sys.executable, "-c", FORKED, live_server.url, name],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    child_pid = result.stdout.split()[-1]
    with QueryClient("ws", "proj", url=live_server.url) as client:
        merged = client.fetch_distributed_series(name, "loss")
    assert (merged["count"].tolist(), merged["mean"].tolist()) == ([2], [2.0])
    assert sorted(merged.attrs["writers"]) == ["parent", f"parent:{child_pid}"]

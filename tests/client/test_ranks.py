"""One script, several processes: how each rank of a distributed job logs (``distributed=``)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import trio

import metrana
from metrana._session import BaseSession
from metrana.server import ServerInfo
from tests.helpers import read_points

RANK_SCRIPT = """
import sys, metrana
url, name, mode = sys.argv[1:4]
run = metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                   log_level="Off", **({{}} if mode == "default" else {{"distributed": mode}}))
for i in range(100):
    metrana.log("loss", float(i))
metrana.log_rl_episode("return", 1.0, rl_step=1, env_id="env-0")
m = metrana.close()
print(m.logged, m.sent)
"""


def run_ranks(url: str, name: str, mode: str, ranks: int = 2,
              variables: tuple[str, str] = ("RANK", "WORLD_SIZE")) -> list[str]:
    """Start every rank at once, as a launcher does; each prints its (logged, sent)."""
    procs = []
    for rank in range(ranks):
        env = {**os.environ, variables[0]: str(rank), variables[1]: str(ranks)}
        procs.append(subprocess.Popen([sys.executable, "-c", RANK_SCRIPT.format(), url, name, mode],
                                      env=env, stdout=subprocess.PIPE, text=True))
    outputs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        outputs.append(out.strip())
    return outputs


@pytest.mark.parametrize("variables", [("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")])
def test_each_rank_gets_its_own_series_by_default(live_server: ServerInfo,
                                                  variables: tuple[str, str]) -> None:
    """Two ranks log the same metric: two series, labelled rank=0 and rank=1, none lost."""
    name = f"ddp-{uuid.uuid4().hex[:8]}"
    assert run_ranks(live_server.url, name, "default", variables=variables) == ["101 101"] * 2
    points = read_points(live_server, name)
    assert sorted(points) == ["loss{rank=0}", "loss{rank=1}", "return{rank=0}@env-0/None",
                              "return{rank=1}@env-0/None"]
    assert [p["value"] for p in points["loss{rank=1}"]] == [float(i) for i in range(100)]


def test_rank0_logs_only_from_rank_zero_and_other_ranks_never_connect(
        live_server: ServerInfo) -> None:
    """distributed="rank0": rank 0's points only; rank 1's calls do nothing, its metrics are 0."""
    name = f"ddp-{uuid.uuid4().hex[:8]}"
    assert run_ranks(live_server.url, name, "rank0") == ["101 101", "0 0"]
    assert sorted(read_points(live_server, name)) == ["loss", "return@env-0/None"]


def test_off_ignores_the_launcher(live_server: ServerInfo) -> None:
    """distributed="off": no label; both ranks' points go to the same series, none lost
    (each rank is its own session, so the second rank's steps follow the first's)."""
    name = f"ddp-{uuid.uuid4().hex[:8]}"
    assert run_ranks(live_server.url, name, "off") == ["101 101"] * 2
    points = read_points(live_server, name)
    assert sorted(p["value"] for p in points["loss"]) == sorted([float(i) for i in range(100)] * 2)


@pytest.mark.parametrize("world", [
    {"RANK": "0", "WORLD_SIZE": "1"},
    {"SLURM_PROCID": "0", "SLURM_NTASKS": "1"},
    # torchrun with one process in a Slurm job of several tasks: torchrun's world decides
    {"RANK": "0", "WORLD_SIZE": "1", "SLURM_PROCID": "2", "SLURM_NTASKS": "4"},
])
def test_a_world_of_one_process_adds_no_rank_label(live_server: ServerInfo,
                                                  world: dict[str, str]) -> None:
    """distributed="auto" in a launcher's world of one: plain series, as without a launcher."""
    name = f"ddp-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RANK", "WORLD_SIZE", "SLURM_", "OMPI_", "PMI_"))}
    done = subprocess.run([sys.executable, "-c", RANK_SCRIPT.format(), live_server.url, name,
                           "default"], env={**env, **world}, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.split() == ["101", "101"], done.stderr
    assert sorted(read_points(live_server, name)) == ["loss", "return@env-0/None"]


def test_a_disabled_rank_gets_a_null_object_that_is_a_session_and_does_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """distributed="rank0" on rank 1: what init()/session()/open_session() give is a Session
    (the same annotations and isinstance checks hold on every rank) built without an engine:
    every call is accepted, nothing connects (the URL has no listener), metrics stay zero."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    names: dict[str, Any] = {"workspace_name": "ws", "project_name": "proj", "run_name": "off-rank",
             "ingestion_url": "http://127.0.0.1:9", "distributed": "rank0"}
    run: metrana.Session = metrana.init(**names)
    assert isinstance(run, metrana.Session)
    assert not isinstance(run, BaseSession)  # a null object, not a session missing its engine
    run.log({"loss": 1.0, "acc": 0.5})
    metrana.log("loss", 2.0)
    run.log_rl_episode("return", 1.0, rl_step=1, env_id="env-0")
    run.log_histogram("weights", [1.0, 2.0, 3.0], step=0)
    run.add_tags("a")
    run.set_notes("n")
    run.flush()
    assert run.close().logged == 0 and run.is_closed
    with metrana.session(**names) as scoped:
        assert isinstance(scoped, metrana.Session)
        scoped.log("loss", 1.0)

    async def in_trio() -> None:
        async with metrana.open_session(**names) as arun:
            assert isinstance(arun, metrana.AsyncSession)
            arun.log("loss", 1.0)
            await arun.aflush()
        assert arun.is_closed

    trio.run(in_trio)

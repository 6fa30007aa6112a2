"""Which job a process belongs to (its orchestration id) and which writer it is (its logger
id): resolved from init()'s arguments and the launcher's environment, checked at init()."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

import metrana
from metrana._orchestration import resolve_logger_id, resolve_orchestration_id
from metrana.server import ServerInfo


@pytest.mark.parametrize(("given", "env", "expected"), [
    ("mine", {"METRANA_ORCHESTRATION_ID": "env", "TORCHELASTIC_RUN_ID": "t"}, "mine"),
    (None, {"METRANA_ORCHESTRATION_ID": "env", "TORCHELASTIC_RUN_ID": "t"}, "env"),
    (None, {"TORCHELASTIC_RUN_ID": "t", "SLURM_JOB_ID": "42", "RAY_JOB_ID": "r"}, "t"),
    (None, {"SLURM_JOB_ID": "42", "RAY_JOB_ID": "r"}, "42"),
    (None, {"SLURM_JOB_ID": "42", "SLURM_STEP_ID": "3"}, "42.3"),
    (None, {"RAY_JOB_ID": "01000000"}, "01000000"),
    (None, {"METRANA_ORCHESTRATION_ID": "  ", "SLURM_JOB_ID": " 7 "}, "7"),
    (None, {}, None),
])
def test_the_job_id_comes_from_the_argument_then_the_environment_in_order(
        given: str | None, env: dict[str, str], expected: str | None) -> None:
    """The argument, METRANA_ORCHESTRATION_ID, TORCHELASTIC_RUN_ID, SLURM_JOB_ID(.STEP),
    RAY_JOB_ID: the first one set wins; none set, no job."""
    assert resolve_orchestration_id(given, env) == expected


def test_torchrun_without_a_rendezvous_id_is_told_apart_by_its_agent() -> None:
    """torchrun names every job "none" without --rdzv-id: two such jobs must not share a run,
    so the id adds the host and the agent's pid (the workers' parent)."""
    resolved = resolve_orchestration_id(None, {"TORCHELASTIC_RUN_ID": "none"})
    assert resolved == f"none@{socket.gethostname()}:{os.getppid()}"


def test_distributed_off_ignores_the_launchers_job_id() -> None:
    """distributed="off" ignores the launcher's environment; an id the user sets still counts."""
    env = {"SLURM_JOB_ID": "42"}
    assert resolve_orchestration_id(None, env, launchers=False) is None
    assert resolve_orchestration_id(None, {**env, "METRANA_ORCHESTRATION_ID": "j"},
                                    launchers=False) == "j"


@pytest.mark.parametrize(("given", "env", "expected"), [
    ("w-7", {"RANK": "1", "WORLD_SIZE": "2"}, "w-7"),
    (None, {"RANK": "1", "WORLD_SIZE": "2"}, "1"),
    (None, {"SLURM_PROCID": "2", "SLURM_NTASKS": "3"}, "2"),
    (None, {}, f"{socket.gethostname()}:{os.getpid()}"),
])
def test_a_writer_is_named_by_its_rank_else_host_and_pid(
        given: str | None, env: dict[str, str], expected: str) -> None:
    """logger_id: given, else the launcher's rank, else host:pid."""
    assert resolve_logger_id(given, env) == expected


@pytest.mark.parametrize(("argument", "value"), [("orchestration_id", ""),
                                                 ("orchestration_id", "x" * 257),
                                                 ("logger_id", " ")])
def test_a_bad_id_is_refused_at_init(thread_server: ServerInfo, argument: str,
                                     value: str) -> None:
    """An empty or overlong id is a MetranaConfigError from init(), naming the argument."""
    given: dict[str, Any] = {argument: value}
    with pytest.raises(metrana.MetranaConfigError, match=argument):
        metrana.init(workspace_name="ws", project_name="proj", run_name="bad-id",
                     ingestion_url=thread_server.url, **given)


def test_init_exports_the_job_id_for_the_processes_it_starts(
        thread_server: ServerInfo, monkeypatch: pytest.MonkeyPatch) -> None:
    """Children inherit METRANA_ORCHESTRATION_ID, so they resolve the same job as their
    parent even where the launcher's variables do not reach them."""
    monkeypatch.setenv("SLURM_JOB_ID", "981")
    run = metrana.init(workspace_name="ws", project_name="proj", run_name="export-job",
                       ingestion_url=thread_server.url)
    assert run.orchestration_id == "981"
    assert os.environ["METRANA_ORCHESTRATION_ID"] == "981"
    metrana.close()


def test_log_distributed_needs_a_step_and_keeps_the_writer_label_its_own(
        thread_server: ServerInfo) -> None:
    """log_distributed without step, or with a label named writer, raises at the call site;
    the other points are kept."""
    run = metrana.init(workspace_name="ws", project_name="proj", run_name="dist-errors",
                       ingestion_url=thread_server.url, logger_id="a")
    with pytest.raises(TypeError, match="needs step="):
        metrana.log_distributed("loss", 1.0, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label 'writer' is set by metrana"):
        metrana.log_distributed("loss", 1.0, step=0, labels={"writer": "me"})
    with pytest.raises(TypeError, match="step"):
        metrana.log_distributed("loss", 1.0, step="one")  # type: ignore[arg-type]
    metrana.log_distributed("loss", 2.0, step=0)
    metrics = run.close()
    assert (metrics.logged, metrics.sent) == (1, 1)


def test_a_rank_told_not_to_log_accepts_log_distributed_and_does_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """distributed="rank0" on rank 1: log_distributed is accepted and goes nowhere."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    run = metrana.init(workspace_name="ws", project_name="proj", run_name="r0",
                       ingestion_url="http://127.0.0.1:9", distributed="rank0")
    run.log_distributed("loss", 1.0, step=0)
    metrana.log_distributed("loss", 1.0, step=1)
    assert not run.joined
    assert run.close().logged == 0


async def test_a_trio_session_logs_distributed_points(thread_server: ServerInfo) -> None:
    """open_session's run has log_distributed too: its points are served merged."""
    from metrana.query import QueryClient

    async with metrana.open_session(workspace_name="ws", project_name="proj",
                                    run_name="trio-dist", ingestion_url=thread_server.url,
                                    orchestration_id="trio-job", logger_id="t0") as run:
        run.log_distributed("loss", 1.0, step=0)
        run.log_distributed("loss", 3.0, step=5, labels={"split": "a"})
        assert run.orchestration_id == "trio-job"
    with QueryClient("ws", "proj", url=thread_server.url) as client:
        plain = client.fetch_distributed_series("trio-dist", "loss")
        split = client.fetch_distributed_series("trio-dist", "loss", labels={"split": "a"})
    assert (plain.index.tolist(), plain["mean"].tolist()) == ([0], [1.0])
    assert (split.index.tolist(), split["count"].tolist()) == ([5], [1])
    assert plain.attrs["writers"] == ["t0"]

"""Reruns and resumes never overlay: running a script again under the same run name cannot put
the second training's points among the first's. A point that would go before where its series
ends on the server — an ``rl_step`` lower than the stored last one, a manual ``step`` not
after the stored last one — is refused like a decreasing step within a session, counted
``invalid`` and named in the close summary. Automatic steps keep appending."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import trio

import metrana
from metrana.server import ServerInfo
from tests.helpers import read_points, run_spawned
from tests.mock_service import MockService, mock_session


def new_run() -> str:
    return f"rerun-{uuid.uuid4().hex[:8]}"


def train(url: str, name: str, value: float, **arguments: object) -> metrana.Metrics:
    """One "training": an RL curve (rl_step 100..1000), manual steps 0..9, automatic steps."""
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=url, log_level="Warn", **arguments) as run:
        for k in range(10):
            run.log_rl_episode("return", value, rl_step=100 * (k + 1), env_id="env-0")
            run.log("eval/score", value, step=k)
            run.log("loss", value)
    return run.get_metrics()


def test_an_rl_rerun_is_refused_and_the_stored_curve_stays_monotonic(
        any_live_server: ServerInfo, loguru_messages: list[str]) -> None:
    """The second session's rl_steps 100..900 go before the stored 1000: refused and counted;
    its rl_step 1000 (not lower) is taken, after the first's. The manual steps 0..9 are all
    refused (none is after the stored 9). The automatic steps append."""
    name = new_run()
    first = train(any_live_server.url, name, 1.0)
    assert (first.sent, first.invalid) == (30, 0)
    second = train(any_live_server.url, name, 2.0)
    assert (second.sent, second.invalid, second.logged) == (11, 19, 30)

    points = read_points(any_live_server, name)
    curve = points["return@env-0/None"]
    assert [(p["step"], p["value"]) for p in curve] == (
        [(100 * (k + 1), 1.0) for k in range(10)] + [(1000, 2.0)])
    assert [(p["step"], p["value"]) for p in points["eval/score"]] == [
        (k, 1.0) for k in range(10)]
    assert [p["value"] for p in points["loss"]] == [1.0] * 10 + [2.0] * 10  # appended

    warning = next(m for m in loguru_messages if "rl_step 100 is lower than 1000" in m)
    assert "series return/EPISODE/env=env-0" in warning
    assert "new run_name" in warning and "resume_strategy='Never'" in warning
    summary = next(m for m in loguru_messages if "closed run" in m and "19 invalid" in m)
    assert summary.startswith("WARNING")
    assert ("19 of the invalid points would have gone before the points run "
            f"{name} already stores (the first: series return/EPISODE/env=env-0: rl_step 100 "
            "is lower than 1000") in summary


def test_a_resume_that_continues_after_the_stored_steps_loses_nothing(
        any_live_server: ServerInfo) -> None:
    """Resuming from a checkpoint, as intended: rl_steps from the stored last one on, manual
    steps after it — every point is taken."""
    name = new_run()
    train(any_live_server.url, name, 1.0)
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=any_live_server.url, log_level="Off") as run:
        for k in range(10):
            run.log_rl_episode("return", 2.0, rl_step=1000 + 100 * k, env_id="env-0")
            run.log("eval/score", 2.0, step=10 + k)
    assert run.resumed and (run.get_metrics().sent, run.get_metrics().invalid) == (20, 0)
    points = read_points(any_live_server, name)
    majors = [p["step"] for p in points["return@env-0/None"]]
    assert majors == sorted(majors) and len(majors) == 20
    assert [p["step"] for p in points["eval/score"]] == list(range(20))


def test_series_are_checked_each_against_its_own_end(any_live_server: ServerInfo) -> None:
    """Ends are per (metric, scale, env_id, episode, labels): another environment, another
    label or a new series of a resumed run starts wherever it likes."""
    name = new_run()
    train(any_live_server.url, name, 1.0)
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=any_live_server.url, log_level="Off") as run:
        run.log_rl_episode("return", 3.0, rl_step=100, env_id="env-1")
        run.log_rl_episode("return", 3.0, rl_step=100, env_id="env-0", labels={"seed": "2"})
        run.log("eval/score", 3.0, step=0, labels={"split": "test"})
        run.log("eval/other", 3.0, step=0)
        run.log_rl_environment_step("reward", 3.0, rl_step=100, env_id="env-0", episode=7)
    assert (run.get_metrics().sent, run.get_metrics().invalid) == (5, 0)


def test_resume_strategy_never_refuses_the_rerun_itself(any_live_server: ServerInfo) -> None:
    """What the refusal's message offers: resume_strategy='Never' refuses the rerun at init."""
    name = new_run()
    train(any_live_server.url, name, 1.0)
    with pytest.raises(metrana.MetranaRunAlreadyExistsError):
        train(any_live_server.url, name, 2.0, resume_strategy="Never")


async def test_a_service_without_the_ends_route_is_logged_to_as_before(
        loguru_messages: list[str]) -> None:
    """The hosted service has no route for where a run's series end (404): the check is
    skipped without a warning (a debug line says so) and the points go out as before."""
    service = MockService(create=lambda seen: 409)
    run = mock_session(service, log_level="Debug")
    async with run.running(init_timeout=5):
        run.log_rl_episode("return", 1.0, rl_step=5, env_id="env-0")
        run.log("score", 1.0, step=0)
    metrics = run.get_metrics()
    assert run.resumed and (metrics.sent, metrics.invalid) == (2, 0)
    assert not any(m.startswith("WARNING") for m in loguru_messages), loguru_messages
    assert any("/api/query/series answered HTTP 404" in m and "not checked" in m
               for m in loguru_messages)


async def test_the_ends_are_asked_once_and_checked_before_anything_is_numbered(
        autojump_clock: trio.abc.Clock) -> None:
    """Points logged right after init() wait for the answer: the first of them is checked
    too. One question, after the run's creation said it exists."""
    ends: list[dict[str, Any]] = [
        {"run": "run", "kind": "rl", "metric": "return", "scale": "EPISODE", "labels": {},
         "environment": "env-0", "episode": None, "count": 9, "first_step": 0, "last_step": 500},
        {"run": "run", "kind": "standard", "metric": "score", "scale": "ML_STEP",
         "labels": {"evaluation": "true"}, "environment": None, "episode": None, "count": 4,
         "first_step": 0, "last_step": 3},
        {"run": "run", "kind": "standard", "metric": "empty", "scale": "ML_STEP", "labels": {},
         "environment": None, "episode": None, "count": 0, "first_step": None,
         "last_step": None}]
    service = MockService(create=lambda seen: 409, ends=ends)
    run = mock_session(service)
    async with run.running(init_timeout=5):
        run.log_rl_episode("return", 1.0, rl_step=400, env_id="env-0")  # refused
        run.log_rl_episode("return", 2.0, rl_step=500, env_id="env-0")
        run.log("score", 1.0, step=3, evaluation=True)  # refused
        run.log("score", 2.0, step=4, evaluation=True)
        run.log("score", 3.0, step=0)  # another series (no evaluation label)
    metrics = run.get_metrics()
    assert (metrics.sent, metrics.invalid) == (3, 2)
    assert sorted(service.delivered()) == [2.0, 2.0, 3.0]
    asked = [s.body for s in service.requests if s.path == "/api/query/series"]
    assert asked == [{"workspace": "ws", "project": "proj", "runs": ["run"]}]


async def test_an_unanswered_question_about_the_ends_warns_and_checks_nothing(
        autojump_clock: trio.abc.Clock, loguru_messages: list[str]) -> None:
    """The service fails the question (HTTP 500 every time): after a bounded wait the
    session goes on unchecked, and says so."""
    service = MockService(create=lambda seen: 409, ends=500)
    run = mock_session(service, log_level="Warn")
    async with run.running(init_timeout=30):
        run.log_rl_episode("return", 1.0, rl_step=1, env_id="env-0")
    assert run.get_metrics().sent == 1
    assert any("could not learn where the series of run ws/proj/run end (HTTP 500)" in m
               for m in loguru_messages)
    assert len([s for s in service.requests if s.path == "/api/query/series"]) == 3  # asked,
    # and asked again


def _worker_logs(step: int) -> None:
    metrana.log("score", float(step), step=step)  # the inherited run; its exit delivers


def _parent_then_forked_workers(url: str, name: str) -> None:
    import multiprocessing

    metrana.init(workspace_name="ws", project_name="proj", run_name=name, ingestion_url=url,
                 log_level="Off")
    metrana.log("score", 100.0, step=100)
    metrana.flush()
    context = multiprocessing.get_context("fork")
    for step in (5, 50):
        child = context.Process(target=_worker_logs, args=(step,))
        child.start()
        child.join()
        assert child.exitcode == 0
    metrana.close()


def test_forked_workers_log_alongside_their_parent_not_as_a_rerun(
        live_server: ServerInfo) -> None:
    """A forked child resumes its parent's run with a session of its own, but it is not a
    rerun: its manual steps below the parent's stored ones are stored, not refused."""
    name = new_run()
    run_spawned(_parent_then_forked_workers, live_server.url, name)
    assert [p["step"] for p in read_points(live_server, name)["score"]] == [5, 50, 100]

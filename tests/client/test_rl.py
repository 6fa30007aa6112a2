"""RL helpers: series identity (metric, scale, env, episode, labels) and major/minor steps."""

from __future__ import annotations

import uuid

import pytest

import metrana
from metrana.server import ServerInfo
from tests.helpers import read_points


def test_rl_series_identity_and_steps(any_live_server: ServerInfo) -> None:
    """Episodes number per (metric, env); env steps per (metric, env, episode); rl_step is
    the major step; evaluation adds its label."""
    name = f"rl-{uuid.uuid4().hex[:8]}"
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=any_live_server.url, close_strategy="CompleteAll") as run:
        for rl_step in (0, 100):
            for env in ("env-0", "env-1"):
                run.log_rl_episode("return", 1.0 + rl_step, rl_step=rl_step, env_id=env)
                for _ in range(3):
                    run.log_rl_environment_step("reward", 0.5, rl_step=rl_step, env_id=env,
                                                episode=rl_step // 100)
        run.log_rl_episode("return", 9.0, rl_step=200, env_id="env-0", evaluation=True)
        run.log_rl_environment_step("reward", 1.0, rl_step=200, env_id=3, episode=7, env_step=40)
        run.log_rl_step("loss", 0.25)
    stored = read_points(any_live_server, name)
    assert [(p["step"], p["minor_step"]) for p in stored["return@env-0/None"]] == [(0, 0), (100, 1)]
    assert [(p["step"], p["minor_step"]) for p in stored["reward@env-1/1"]] == [
        (100, 0), (100, 1), (100, 2)]
    assert [(p["step"], p["minor_step"]) for p in stored["return{evaluation=true}@env-0/None"]] == [
        (200, 0)]
    assert [(p["step"], p["minor_step"]) for p in stored["reward@3/7"]] == [(200, 40)]
    assert [p["value"] for p in stored["loss"]] == [0.25]


def test_rl_argument_errors_at_the_call_site(live_server: ServerInfo) -> None:
    """rl_step is required and an int; env_id a str; negative steps refused."""
    with metrana.session(workspace_name="ws", project_name="proj", run_name="rl-errors",
                         ingestion_url=live_server.url) as run:
        with pytest.raises(TypeError, match="rl_step"):
            run.log_rl_episode("return", 1.0, rl_step=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="episode"):
            run.log_rl_environment_step("r", 1.0, rl_step=1, episode=-1)
        with pytest.raises(TypeError, match="env_id"):
            run.log_rl_episode("return", 1.0, rl_step=1, env_id=2.5)
        with pytest.raises(TypeError, match="with a list of env_id"):
            run.log_rl_episode("return", 1.0, rl_step=1, env_id=["a"])
        with pytest.raises(metrana.MetranaMetricNameError):
            run.log_rl_environment_step("bad name", 1.0, rl_step=1)

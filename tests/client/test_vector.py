"""Vectorized logging: many points per call, stored exactly like the scalar calls would."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import pytest

import metrana
from metrana.server import ServerInfo
from tests.helpers import read_points


def open_run(info: ServerInfo) -> metrana.Session:
    return metrana.session(workspace_name="ws", project_name="proj",
                           run_name=f"vec-{uuid.uuid4().hex[:8]}", ingestion_url=info.url,
                           close_strategy="CompleteAll")


def test_log_a_sequence_or_array_of_values(live_server: ServerInfo) -> None:
    """log(name, values) logs consecutive steps; step= gives the first step or every step."""
    with open_run(live_server) as run:
        run.log("auto", [0.5, 1.5])
        run.log("auto", np.array([2.5, 3.5], dtype=np.float32))
        run.log("auto", 4.5)
        run.log("from_ten", (1, 2, 3), step=10)
        run.log("explicit", np.array([7.0, 8.0]), step=np.array([3, 9]))
    stored = read_points(live_server, run.run_name)
    assert [(p["step"], p["value"]) for p in stored["auto"]] == [
        (0, 0.5), (1, 1.5), (2, 2.5), (3, 3.5), (4, 4.5)]
    assert [(p["step"], p["value"]) for p in stored["from_ten"]] == [(10, 1.0), (11, 2.0), (12, 3.0)]
    assert [(p["step"], p["value"]) for p in stored["explicit"]] == [(3, 7.0), (9, 8.0)]
    assert run.get_metrics().sent == run.get_metrics().logged == 10


def test_env_arrays_log_one_series_per_environment(live_server: ServerInfo) -> None:
    """env_id=[...] with values [M] or [M, T]: each env its own series, steps per env."""
    envs = ["env-0", "env-1", "env-2"]
    with open_run(live_server) as run:
        run.log_rl_environment_step("reward", np.arange(6.0).reshape(3, 2), rl_step=5,
                                    env_id=envs, episode=[0, 0, 1])
        run.log_rl_environment_step("reward", [10.0, 11.0, 12.0], rl_step=6, env_id=envs,
                                    episode=[0, 0, 1])
        run.log_rl_environment_step("reward", [1.0, 2.0], rl_step=7, env_id="solo", episode=3,
                                    env_step=100)
    stored = read_points(live_server, run.run_name)
    assert [(p["step"], p["minor_step"], p["value"]) for p in stored["reward@env-1/0"]] == [
        (5, 0, 2.0), (5, 1, 3.0), (6, 2, 11.0)]
    assert [(p["step"], p["minor_step"], p["value"]) for p in stored["reward@env-2/1"]] == [
        (5, 0, 4.0), (5, 1, 5.0), (6, 2, 12.0)]
    assert [(p["step"], p["minor_step"]) for p in stored["reward@solo/3"]] == [(7, 100), (7, 101)]
    assert run.get_metrics().sent == 11


def test_vector_arguments_are_checked_at_the_call_site(live_server: ServerInfo) -> None:
    """Wrong shapes, lengths and element types fail in the call, and nothing is queued."""
    with open_run(live_server) as run:
        with pytest.raises(ValueError, match="3 rows for 2 envs"):
            run.log_rl_environment_step("r", np.zeros((3, 4)), rl_step=0, env_id=["a", "b"])
        with pytest.raises(ValueError, match="episode has 3 entries for 2 envs"):
            run.log_rl_environment_step("r", [1.0, 2.0], rl_step=0, env_id=["a", "b"],
                                        episode=[0, 1, 2])
        with pytest.raises(TypeError, match="1-D"):
            run.log("loss", np.zeros((2, 2)))
        with pytest.raises(TypeError):
            run.log("loss", [1.0, "x"])
        with pytest.raises(ValueError, match="step has 1 entries for 2 values"):
            run.log("loss", [1.0, 2.0], step=[4])
    assert run.get_metrics().logged == 0


def test_vectorized_episodes_store_what_a_loop_of_scalar_calls_would(
        any_live_server: ServerInfo) -> None:
    """log_rl_episode with env_id=[...] and values [M]: one episode per environment, numbered
    per environment (automatically, or by episode= as an int or M ints), rl_step the major
    step — the same points as one scalar call per environment, on both stores."""
    envs = np.array(["env-0", "env-1", "env-2"])
    calls: list[tuple[str, np.ndarray, list[float], dict[str, Any]]] = [
        ("auto", envs, [1.0, 2.0, 3.0], {}),
        ("auto", envs[[1]], [4.0], {}),  # only env-1 finished an episode
        ("auto", envs[[2, 0]], [5.0, 6.0], {}),  # any order
        ("given", envs[[0, 1]], [7.0, 8.0], {"episode": [10, 20]}),
        ("given", envs, [9.0, 10.0, 11.0], {"episode": 30}),
    ]
    with open_run(any_live_server) as run:
        for rl_step, (name, ids, values, extra) in enumerate(calls):
            run.log_rl_episode(f"vec_{name}", np.array(values), rl_step=rl_step * 100,
                               env_id=ids, **extra)
            episodes = extra.get("episode")
            for i, (env, value) in enumerate(zip(ids.tolist(), values, strict=True)):
                run.log_rl_episode(f"loop_{name}", value, rl_step=rl_step * 100, env_id=env,
                                   episode=episodes[i] if isinstance(episodes, list) else episodes)
    stored = read_points(any_live_server, run.run_name)

    def points(series: str) -> list[tuple[int, int, float]]:
        return [(p["step"], p["minor_step"], p["value"]) for p in stored[series]]

    for name in ("auto", "given"):
        for env in envs.tolist():
            assert points(f"vec_{name}@{env}/None") == points(f"loop_{name}@{env}/None")
    assert points("vec_auto@env-0/None") == [(0, 0, 1.0), (200, 1, 6.0)]
    assert points("vec_auto@env-1/None") == [(0, 0, 2.0), (100, 1, 4.0)]
    assert points("vec_auto@env-2/None") == [(0, 0, 3.0), (200, 1, 5.0)]
    assert points("vec_given@env-1/None") == [(300, 20, 8.0), (400, 30, 10.0)]
    assert points("vec_given@env-2/None") == [(400, 30, 11.0)]
    metrics = run.get_metrics()
    assert (metrics.sent, metrics.invalid) == (2 * 11, 0)


def test_vectorized_episodes_are_checked_at_the_call_site(live_server: ServerInfo) -> None:
    """Mismatched lengths, a 2-D value, one value for a list of environments, a bad id or
    episode: an error naming what is wrong, raised by the call, and nothing is queued."""
    envs = ["env-0", "env-1"]
    with open_run(live_server) as run:
        with pytest.raises(ValueError, match=r"^values for 'ret' have 3 entries for 2 envs$"):
            run.log_rl_episode("ret", [1.0, 2.0, 3.0], rl_step=0, env_id=envs)
        with pytest.raises(ValueError, match=r"^episode has 1 entries for 2 envs$"):
            run.log_rl_episode("ret", [1.0, 2.0], rl_step=0, env_id=envs, episode=[4])
        with pytest.raises(TypeError, match=r"^values for 'ret' must have shape \[envs\], one "
                                            r"finished episode per environment; got \(2, 3\)$"):
            run.log_rl_episode("ret", np.zeros((2, 3)), rl_step=0, env_id=envs)
        with pytest.raises(TypeError, match=r"^with a list of env_id, values for 'ret' must be "
                                            r"a list or array of one value per environment, "
                                            r"got float$"):
            run.log_rl_episode("ret", 1.0, rl_step=0, env_id=envs)
        with pytest.raises(TypeError, match=r"^env_id must be a str \(or int\), got float$"):
            run.log_rl_episode("ret", [1.0, 2.0], rl_step=0, env_id=["env-0", 1.5])
        with pytest.raises(ValueError, match="episode"):
            run.log_rl_episode("ret", [1.0, 2.0], rl_step=0, env_id=envs, episode=[1, -1])
        with pytest.raises(TypeError, match="rl_step"):
            run.log_rl_episode("ret", [1.0, 2.0], rl_step=0.5, env_id=envs)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="must be a number"):
            run.log_rl_episode("ret", [1.0, "x"], rl_step=0, env_id=envs)
    assert run.get_metrics().logged == 0


def test_one_timestamp_per_value(live_server: ServerInfo) -> None:
    """timestamp= may give each value of a vectorized call its own time (points recorded
    earlier, e.g. imported); a wrong length or float seconds fail in the call."""
    stamps = np.array([1_700_000_000_000_000_001, 1_700_000_001_000_000_002,
                       1_700_000_002_500_000_003])
    with open_run(live_server) as run:
        run.log("imported", [1.0, 2.0, 3.0], step=[5, 6, 9], timestamp=stamps)
        run.log("listed", [1.0, 2.0], timestamp=[1_700_000_000_000_000_000,
                                                 1_700_000_000_000_001_000])
        with pytest.raises(ValueError, match="timestamp has 2 entries for 3 values"):
            run.log("imported", [4.0, 5.0, 6.0], step=[10, 11, 12], timestamp=stamps[:2])
        with pytest.raises(TypeError, match="integer nanoseconds"):
            run.log("imported", [4.0], step=[10], timestamp=np.array([1.7e9]))
    stored = read_points(live_server, run.run_name)
    assert [(p["step"], p["timestamp_ns"]) for p in stored["imported"]] == [
        (5, 1_700_000_000_000_000_001), (6, 1_700_000_001_000_000_002),
        (9, 1_700_000_002_500_000_003)]
    assert [p["timestamp_ns"] for p in stored["listed"]] == [1_700_000_000_000_000_000,
                                                            1_700_000_000_000_001_000]
    assert run.get_metrics().logged == 5

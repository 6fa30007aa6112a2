"""Gymnasium end to end: real CartPole episodes reach a real server as RL episode series."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import RecordEpisodeStatistics
from gymnasium.wrappers.vector import RecordEpisodeStatistics as VectorRecordEpisodeStatistics

import metrana
from metrana.integrations.gymnasium import MetranaEpisodeStatistics, log_episode_statistics
from metrana.server import ServerInfo
from tests.integrations.helpers import run_name, series


def rl_points(stored: list[dict[str, Any]], metric: str) -> dict[str, list[tuple[int, int, float]]]:
    """{env_id: [(rl_step, episode, value), ...]} of one RL metric."""
    return {s["environment_id"]: [(p["step"], p["minor_step"], p["value"]) for p in s["points"]]
            for s in stored if s["metric_name"] == metric and s["kind"] == "rl"}


def test_vector_wrapper_and_log_episode_statistics(live_server: ServerInfo) -> None:
    """3 CartPole envs with random actions: the wrapper logs every episode of every env at
    rl_step = env steps so far, as the user's own RecordEpisodeStatistics saw it; feeding that
    wrapper's infos (with its `_episode` mask) to log_episode_statistics logs the same; the
    user's infos carry no metrana keys."""
    name = run_name("gym-vec")
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, close_strategy="CompleteAll")
    base = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(3)])
    wrapper = MetranaEpisodeStatistics(base)
    assert isinstance(wrapper, gym.vector.VectorWrapper)
    envs = VectorRecordEpisodeStatistics(wrapper)
    envs.reset(seed=1)
    envs.action_space.seed(1)
    expected: dict[str, list[tuple[int, int, float, float]]] = defaultdict(list)
    partial_masks = 0
    for i in range(300):
        _, _, _, _, infos = envs.step(envs.action_space.sample())
        assert not any(key.startswith(("metrana", "_metrana")) for key in infos)
        if "episode" in infos:
            mask = infos["_episode"]
            partial_masks += int(not mask.all())
            for env in np.flatnonzero(mask):
                env_id = str(env)
                expected[env_id].append(((i + 1) * 3, len(expected[env_id]),
                                         float(infos["episode"]["r"][env]),
                                         float(infos["episode"]["l"][env])))
            log_episode_statistics(infos, rl_step=(i + 1) * 3, prefix="check")
    envs.close()
    assert wrapper.env_steps == 900 and partial_masks > 0
    metrics = metrana.close()
    assert metrics.invalid == 0 and metrics.sent == metrics.logged
    stored = series(live_server, name)
    assert sum(len(v) for v in expected.values()) == wrapper.episodes_logged > 10
    returns, lengths = rl_points(stored, "episode/return"), rl_points(stored, "episode/length")
    assert sorted(returns) == ["0", "1", "2"]
    for env_id, episodes in expected.items():
        assert returns[env_id] == [(step, n, r) for step, n, r, _ in episodes]
        assert lengths[env_id] == [(step, n, length) for step, n, _, length in episodes]
        assert rl_points(stored, "check/return")[env_id] == returns[env_id]
        assert len(rl_points(stored, "episode/time")[env_id]) == len(episodes)
    assert all(s["scale"] == "EPISODE" for s in stored)


def test_single_env_wrapper_with_rl_step_function(live_server: ServerInfo) -> None:
    """One env: env_id "0", rl_step from the given function; an env that already has
    RecordEpisodeStatistics keeps its own statistics untouched."""
    name = run_name("gym-one")
    updates = {"n": 0}
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url, close_strategy="CompleteAll") as run:
        env = MetranaEpisodeStatistics(
            RecordEpisodeStatistics(gym.make("CartPole-v1")), session=run,
            rl_step=lambda: updates["n"], labels={"agent": "random"})
        env.reset(seed=3)
        env.action_space.seed(3)
        seen: list[Any] = []
        while len(seen) < 5:
            _, _, terminated, truncated, info = env.step(env.action_space.sample())
            updates["n"] += 10
            if terminated or truncated:
                assert set(info) == {"episode"}  # the user's own statistics, only
                seen.append((updates["n"] - 10, len(seen), float(info["episode"]["r"])))
                env.reset()
    stored = series(live_server, name)
    assert {s["environment_id"] for s in stored} == {"0"}
    assert all(s["labels"] == {"agent": "random"} for s in stored)
    assert rl_points(stored, "episode/return")["0"] == seen

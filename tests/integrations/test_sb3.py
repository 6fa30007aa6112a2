"""Stable-Baselines3 end to end: PPO on CartPole, its episodes and its logger's aggregates
reach a real server."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import httpx
import numpy as np
import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, configure

import metrana
from metrana.integrations.sb3 import MetranaCallback, MetranaOutputFormat
from metrana.server import ServerInfo
from tests.integrations.helpers import run_name, series


class Capture(KVWriter):
    """What SB3 dumped, as its own output formats saw it."""

    def __init__(self) -> None:
        self.dumps: list[tuple[int, dict[str, Any], dict[str, Any]]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0
              ) -> None:
        self.dumps.append((step, dict(key_values), dict(key_excluded)))

    def close(self) -> None:
        pass


class EpisodeSteps(BaseCallback):
    """num_timesteps at which each env finished each episode (from the Monitor infos)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, list[tuple[int, float, float]]] = defaultdict(list)

    def _on_step(self) -> bool:
        for env, info in enumerate(self.locals["infos"]):
            if "episode" in info:
                self.seen[str(env)].append((self.num_timesteps, info["episode"]["r"],
                                            info["episode"]["l"]))
        self.logger.record("custom/text", "not a number")
        self.logger.record("custom/hidden", 1.0, exclude="metrana")
        return True


def test_ppo_on_cartpole(live_server: ServerInfo) -> None:
    """PPO, 2 envs, 512 steps: every Monitor episode is an RL episode point per env at
    rl_step=num_timesteps; every numeric value SB3 dumped is a point at its num_timesteps;
    strings and keys excluded for "metrana" are skipped."""
    name = run_name("sb3")
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, close_strategy="CompleteAll")
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=64, n_epochs=2, seed=0, device="cpu",
                policy_kwargs={"net_arch": [16]})
    capture = Capture()
    logger = configure(None, [])
    logger.output_formats.append(capture)
    model.set_logger(logger)
    episodes = EpisodeSteps()
    callback = MetranaCallback()
    model.learn(total_timesteps=512, callback=[episodes, callback])
    assert sum(isinstance(f, MetranaOutputFormat) for f in logger.output_formats) == 1
    metrics = metrana.close()
    assert metrics.invalid == 0 and metrics.sent == metrics.logged

    stored = series(live_server, name)
    rl = {(s["metric_name"], s["environment_id"]): s["points"] for s in stored if s["kind"] == "rl"}
    assert sorted(episodes.seen) == ["0", "1"]
    for env_id, seen in episodes.seen.items():
        # the Monitor's own record of this env's episodes
        monitor = env.envs[int(env_id)]  # type: ignore[attr-defined]  # a DummyVecEnv
        assert [r for _, r, _ in seen] == monitor.get_episode_rewards()
        assert [(p["step"], p["minor_step"], p["value"]) for p in rl["episode/return", env_id]] == [
            (step, n, r) for n, (step, r, _) in enumerate(seen)]
        assert [p["value"] for p in rl["episode/length", env_id]] == [float(n) for _, _, n in seen]
        assert len(rl["episode/time", env_id]) == len(seen)
    assert callback.episodes_logged == sum(len(v) for v in episodes.seen.values())

    expected: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for step, values, _ in capture.dumps:
        for key, value in values.items():
            if isinstance(value, (int, float, np.number)) and key != "custom/hidden":
                expected[key].append((step, float(value)))
    assert len(capture.dumps) == 4 and "train/loss" in expected and "time/fps" in expected
    assert "rollout/ep_rew_mean" in expected
    standard = {s["metric_name"]: s["points"] for s in stored if s["kind"] == "standard"}
    assert sorted(standard) == sorted(expected)
    for key, points in expected.items():
        assert [(p["step"], p["value"]) for p in standard[key]] == points, key
    assert standard["time/total_timesteps"][-1]["step"] == 512

    # The model's hyper-parameters, as config (the run page's Config), sent when training began.
    config = {path.removeprefix("config/sb3/"): a["value"] for path, a in httpx.get(
        f"{live_server.url}/api/runs/ws/proj/{name}").json()["attributes"].items()}
    assert {k: config[k] for k in ("algorithm", "policy", "device", "n_steps", "batch_size",
                                   "n_epochs", "gamma", "gae_lambda", "ent_coef", "seed",
                                   "n_envs", "learning_rate", "clip_range")} == {
        "algorithm": "PPO", "policy": "ActorCriticPolicy", "device": "cpu", "n_steps": 64,
        "batch_size": 64, "n_epochs": 2, "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.0,
        "seed": 0, "n_envs": 2, "learning_rate": 0.0003, "clip_range": 0.2}
    assert config["policy_kwargs/net_arch/0"] == 16
    assert isinstance(config["clip_range_schedule"], str)  # SB3 makes clip_range a schedule


def test_output_format_repeats_and_restarts(live_server: ServerInfo,
                                            loguru_messages: list[str]) -> None:
    """A repeated dump at one step adds nothing; a different value at that step, or a step
    lower than before (learn() again with reset_num_timesteps=True), is not logged — and is
    reported — instead of reaching the server as an invalid point; numbers of every kind
    (numpy, torch, bool) are logged, other values skipped."""
    import torch

    name = run_name("sb3-fmt")
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         ingestion_url=live_server.url, close_strategy="CompleteAll") as run:
        fmt = MetranaOutputFormat(session=run)
        fmt.write({"a": 1.0, "b": np.float32(0.5), "c": torch.tensor(2.0), "d": True,
                   "v": np.zeros(3), "s": "x"}, {}, step=100)
        fmt.write({"a": 1.0}, {}, step=100)
        fmt.write({"a": 2.0}, {}, step=100)
        fmt.write({"a": 3.0}, {}, step=50)
        fmt.write({"a": 4.0}, {"a": ("stdout",)}, step=200)
        assert fmt.skipped == 2
        assert run.get_metrics().invalid == 0
    stored = {s["metric_name"]: [(p["step"], p["value"]) for p in s["points"]]
              for s in series(live_server, name)}
    assert stored == {"a": [(100, 1.0), (200, 4.0)], "b": [(100, 0.5)], "c": [(100, 2.0)],
                      "d": [(100, 1.0)]}
    assert sum("'a'" in m for m in loguru_messages) == 1


def test_callback_needs_a_run() -> None:
    """Without metrana.init (or session=) the callback fails before training starts."""
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, device="cpu")
    with pytest.raises(metrana.MetranaNotInitializedError):
        model.learn(total_timesteps=32, callback=MetranaCallback())
    assert model.num_timesteps == 0

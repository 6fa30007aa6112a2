"""A benchmark suite (algorithms × tasks × seeds) written straight into a store, with every
run's scores computed here in numpy: what the statistics tests hand to ``rliable`` directly.

Each run has ``config/algo``, ``config/task``, ``config/seed``; a standard ``eval/return``
series and an RL ``return`` logged per episode in two environments. Seeds per algorithm may
differ (``seeds``), so groups of different sizes are compared.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from metrana.server.store import Store

__all__ = ["SuiteRun", "score_matrices", "write_suite"]

ENVS = ("env-0", "env-1")


@attrs.define
class SuiteRun:
    name: str
    algo: str
    task: str
    seed: int
    eval_return: np.ndarray  # the standard series' values, step by step
    episodes: dict[str, np.ndarray]  # environment -> episode returns, in order

    def score(self, summary: str, rl: bool) -> float:
        """numpy's reference score: the ``summary`` of ``return`` (RL) or ``eval/return``."""
        if rl:
            if summary in ("last10", "last"):
                return float(np.mean([v[-10:].mean() for v in self.episodes.values()]))
            every = np.concatenate(list(self.episodes.values()))
        else:
            every = self.eval_return
            if summary == "last10":
                return float(every[-10:].mean())
            if summary == "last":
                return float(every[-1])
        return float(every.min() if summary == "min" else every.max() if summary == "max"
                     else every.mean())


def write_suite(target: str | Path | Store, workspace: str, project: str, *,
                algos: Sequence[tuple[str, int]] = (("dqn", 4), ("ppo", 5), ("sac", 5)),
                tasks: Sequence[str] = ("breakout", "pong"), points: int = 30,
                episodes: int = 15, rl: bool = True) -> list[SuiteRun]:
    """Write the suite (``algos``: (name, seeds) pairs); every run, to compare with."""
    store = target if isinstance(target, Store) else Store(target)
    runs: list[SuiteRun] = []
    try:
        base = time.time_ns() - 10**12
        for a, (algo, seeds) in enumerate(algos):
            for t, task in enumerate(tasks):
                for seed in range(seeds):
                    name = f"{algo}-{task}-s{seed}"
                    rng = np.random.default_rng(1000 * a + 100 * t + seed)
                    skill = (1 + 0.05 * a) * (10 if task == "pong" else 100)
                    curve = skill * (1 - np.exp(-np.arange(points) / 8))
                    values = curve + rng.normal(0, skill * 0.5, points)
                    run_episodes = {env: skill * (0.5 + rng.random(episodes)) for env in ENVS}
                    rl_series = [{
                        "metric_name": "return", "scale": "EPISODE", "ordering": 1,
                        "environment_id": env,
                        "points": [{"major_step": 100 * k, "minor_step": k,
                                    "timestamp": base + k, "float_value": float(v)}
                                   for k, v in enumerate(returns)]}
                        for env, returns in run_episodes.items()] if rl else []
                    store.create_run({"run": {"workspace": workspace, "project": project,
                                              "run_name": name},
                                      "create_project_if_missing": True})
                    config = {"algo": algo, "task": task, "seed": seed}
                    store.update_runs({"session_id": 1, "run_updates": [{
                        "workspace": workspace, "project": project, "run_name": name,
                        "attributes": [_attribute(f"config/{k}", v) for k, v in config.items()],
                        "series": [{"metric_name": "eval/return", "scale": "ML_STEP",
                                    "ordering": 1,
                                    "points": [{"step": 10 * k, "timestamp": base + k,
                                                "float_value": float(v)}
                                               for k, v in enumerate(values)]}],
                        "rl_series": rl_series, "close_run": {}}]})
                    runs.append(SuiteRun(name, algo, task, seed, values, run_episodes))
    finally:
        if not isinstance(target, Store):
            store.close()
    return runs


def _attribute(path: str, value: Any) -> dict[str, Any]:
    kind = "int_value" if isinstance(value, int) else "string_value"
    return {"path": path, kind: value}


def score_matrices(runs: list[SuiteRun], summary: str = "last10", *, rl: bool = False,
                   by_task: bool = True,
                   normalize: Mapping[str, tuple[float, float]] | None = None
                   ) -> dict[str, np.ndarray]:
    """Each algorithm's scores as rliable takes them: ``runs × tasks`` (runs by name within
    each task; one column of every run without ``by_task``), keyed ``config/algo=<algo>``,
    algorithms in name order."""
    out = {}
    for algo in sorted({r.algo for r in runs}):
        mine = sorted((r for r in runs if r.algo == algo), key=lambda r: r.name)
        if not by_task:
            out[f"config/algo={algo}"] = np.array([[r.score(summary, rl)] for r in mine])
            continue
        tasks = sorted({r.task for r in mine})
        columns = []
        for task in tasks:
            scores = np.array([r.score(summary, rl) for r in mine if r.task == task])
            if normalize is not None:
                low, high = normalize[task]
                scores = (scores - low) / (high - low)
            columns.append(scores)
        out[f"config/algo={algo}"] = np.stack(columns, axis=1)
    return out

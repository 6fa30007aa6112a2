"""A project with known runs, logged through the real client; what the tests expect of it is
computed here in plain Python (``min``, ``max``, ``statistics``), never asked of metrana."""

from __future__ import annotations

import math
import statistics
from typing import Any

import attrs

import metrana

WORKSPACE = "query"
PROJECT = "known"
RUNS = 8
LRS = [0.1, 0.03, 0.01, 0.003, 0.001, 0.0003, 0.0001, 0.3]
NAN_AT = 7  # run 6's loss has no number at this step
ENVS = 4
RL_STEPS = 20


@attrs.frozen
class KnownRun:
    """One run as logged: its name, config (nested, as passed to ``init``) and series."""

    index: int
    name: str
    experiment: str
    config: dict[str, Any]
    series: dict[str, list[float]]

    def attribute(self, path: str) -> Any:
        """``config/a/b`` of the nested config; None when the run lacks it."""
        value: Any = self.config
        for part in path.removeprefix("config/").split("/"):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value

    def summary(self, metric: str, fn: str) -> float | None:
        values = self.series.get(metric)
        if values is None:
            return None
        numbers = [v for v in values if not math.isnan(v)]
        if fn == "count":
            return len(values)  # every point logged, with a number or not
        if fn == "last":
            return None if math.isnan(values[-1]) else values[-1]
        if fn == "min":
            return min(numbers)
        if fn == "max":
            return max(numbers)
        assert fn == "mean", fn
        return statistics.fmean(numbers)


def _run(i: int) -> KnownRun:
    config: dict[str, Any] = {
        "lr": LRS[i],
        "optimizer": "adamw" if i == 7 else ("adam" if i % 2 == 0 else "sgd"),
        "batch_size": 32 * (i % 3 + 1),
        "augment": i % 3 == 0,
        "model": {"depth": 2 + i},
    }
    if i < 3:
        config["warmup"] = 100 * (i + 1)  # only some runs have it
    loss = [(1 + i) * math.exp(-k / 10) + 0.01 * math.sin(k * (i + 1)) for k in range(40 + 5 * i)]
    if i == 6:
        loss[NAN_AT] = math.nan
    series = {"loss": loss}
    if i != 5:  # run 5 never logs accuracy
        series["acc"] = [1 - v / (2 + i) if not math.isnan(v) else 0.5 for v in loss]
    return KnownRun(i, f"run-{i}", "exp-a" if i < 4 else "exp-b", config, series)


KNOWN = [_run(i) for i in range(RUNS)]


def rl_value(env: int, step: int) -> float:
    return float(env * 10 + step) / 3 + (0.5 if env % 2 else -0.25) * step


def log_project(url: str) -> None:
    """Every known run, one after another (ids, hence creation order, follow ``KNOWN``).
    Run 0 also logs an RL metric from :data:`ENVS` environments."""
    for run in KNOWN:
        with metrana.session(workspace_name=WORKSPACE, project_name=PROJECT, run_name=run.name,
                             experiment_name=run.experiment, ingestion_url=url,
                             config=run.config) as session:
            for metric, values in run.series.items():
                for value in values:
                    session.log(metric, value)
            if run.index == 0:
                for step in range(RL_STEPS):
                    for env in range(ENVS):
                        session.log_rl_episode("return", rl_value(env, step), rl_step=step,
                                               env_id=f"env-{env}")

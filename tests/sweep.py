"""A generated sweep (learning rates × algorithms × seeds) written straight into a store, and
the numbers a test checks the server's answers against (numpy on the same data).

Straight through :class:`~metrana.server.store.Store` (the client's ingest is tested
elsewhere; here what is read back is the point): one run per configuration and seed, with
``config/lr``, ``config/algo``, ``config/seed``; a standard ``loss`` series and, optionally, an
RL ``return`` logged per episode in several environments.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from metrana.server.store import Store

__all__ = ["SweepRun", "bucket_means", "write_sweep"]


@attrs.define
class SweepRun:
    name: str
    config: dict[str, Any]
    steps: np.ndarray
    loss: np.ndarray
    returns: dict[str, tuple[np.ndarray, np.ndarray]]  # env -> (rl_steps, values) per episode


def _attribute(path: str, value: Any) -> dict[str, Any]:
    kind = ("bool_value" if isinstance(value, bool) else "int_value" if isinstance(value, int)
            else "float_value" if isinstance(value, float) else "string_value")
    return {"path": path, kind: value}


def write_sweep(target: str | Path | Store, workspace: str, project: str, *,
                lrs: Sequence[float] = (1e-3, 1e-2), algos: Sequence[str] = ("ppo", "dqn"),
                seeds: int = 3, points: int = 50, envs: int = 0, episodes: int = 0,
                ragged: bool = True, close: bool = True) -> list[SweepRun]:
    """Write the sweep; every run's data, to compare with. ``ragged``: runs have different
    lengths and step spacings (so buckets hold different runs), as real seeds do."""
    store = target if isinstance(target, Store) else Store(target)
    runs: list[SweepRun] = []
    try:
        base = time.time_ns() - 10**12
        for a, algo in enumerate(algos):
            for lr in lrs:
                for seed in range(seeds):
                    name = f"{algo}-lr{lr:g}-s{seed}"
                    rng = np.random.default_rng(len(runs))
                    length = points - (seed * points // 10 if ragged else 0)
                    stride = 1 + (seed % 2 if ragged else 0)
                    steps = np.arange(length, dtype=np.int64) * stride
                    loss = (2.0 + a) * np.exp(-steps * lr * 3000 / points) \
                        + rng.normal(0, 0.05, length)
                    config = {"lr": lr, "algo": algo, "seed": seed}
                    returns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                    rl_series = []
                    for env in range(envs):
                        count = episodes - (env if ragged else 0)
                        rl_steps = np.arange(count, dtype=np.int64) * 100 + env * 7
                        values = 10 * lr * 100 * (1 - np.exp(-np.arange(count) / 10)) \
                            + rng.normal(0, 1, count) + a
                        returns[f"env-{env}"] = (rl_steps, values)
                        rl_series.append({
                            "metric_name": "return", "scale": "EPISODE", "ordering": 1,
                            "environment_id": f"env-{env}",
                            "points": [{"major_step": int(x), "minor_step": k,
                                        "timestamp": base + int(x), "float_value": float(v)}
                                       for k, (x, v) in enumerate(zip(rl_steps, values,
                                                                      strict=True))]})
                    store.create_run({"run": {"workspace": workspace, "project": project,
                                              "run_name": name},
                                      "create_project_if_missing": True})
                    update: dict[str, Any] = {
                        "workspace": workspace, "project": project, "run_name": name,
                        "attributes": [_attribute(f"config/{k}", v) for k, v in config.items()],
                        "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                                    "points": [{"step": int(s), "timestamp": base + int(s),
                                                "float_value": float(v)}
                                               for s, v in zip(steps, loss, strict=True)]}],
                        "rl_series": rl_series}
                    if close:
                        update["close_run"] = {}
                    store.update_runs({"session_id": 1, "run_updates": [update]})
                    runs.append(SweepRun(name, config, steps, loss, returns))
    finally:
        if not isinstance(target, Store):
            store.close()
    return runs


def bucket_means(xs: np.ndarray, values: np.ndarray, lo: int, hi: int, n: int) -> np.ndarray:
    """numpy's reference: the mean of the values in each of ``n`` equal-width buckets of
    steps over [lo, hi] (NaN where none)."""
    inside = (xs >= lo) & (xs <= hi)
    xs, values = xs[inside], values[inside]
    width = (hi - lo + 1) / n
    index = np.minimum(((xs - lo) / width).astype(np.int64), n - 1)
    sums = np.bincount(index, values, n)
    counts = np.bincount(index, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)

"""``metrana demo``: a short ML run and RL run logged to a local server, then read back."""

from __future__ import annotations

import math
import random
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

__all__ = ["run_demo"]


def _ml_run(url: str, run_name: str) -> Any:
    import metrana

    metrana.init(
        workspace_name="demo", project_name="mnist", run_name=run_name,
        experiment_name="baseline", ingestion_url=url, close_strategy="CompleteAll",
        config={"optimizer": {"name": "adam", "lr": 3e-4, "betas": [0.9, 0.999]},
                "batch_size": 64, "epochs": 3},
    )
    rng = random.Random(0)
    for step in range(3000):
        loss = 2.3 * math.exp(-step / 800) + rng.random() * 0.05
        metrana.log({"train/loss": loss, "train/lr": 3e-4 * (1 - step / 3000)})
        if step % 500 == 499:
            metrana.log("val/accuracy", 1 - loss / 2.5, evaluation=True)
    return metrana.close()


def _rl_run(url: str, run_name: str) -> Any:
    import metrana

    rng = random.Random(1)
    with metrana.session(workspace_name="demo", project_name="cartpole", run_name=run_name,
                         ingestion_url=url, close_strategy="CompleteAll",
                         config={"algo": "ppo", "num_envs": 4, "gamma": 0.99}) as run:
        rl_step = 0
        for update in range(20):
            run.log_rl_step("policy/loss", 1 / (update + 1) + rng.random() * 0.01)
            for env in range(4):
                env_id = f"env-{env}"
                episode_return = 0.0
                for _ in range(25):
                    reward = rng.random()
                    episode_return += reward
                    run.log_rl_environment_step("reward", reward, rl_step=rl_step,
                                                env_id=env_id, episode=update)
                run.log_rl_episode("episode/return", episode_return, rl_step=rl_step,
                                   env_id=env_id)
            if update % 5 == 4:
                run.log_rl_episode("episode/return", 20.0 + update, rl_step=rl_step,
                                   env_id="eval-0", evaluation=True)
            rl_step += 100
    return run.get_metrics()


def _print_stored(url: str, runs: list[tuple[str, str, str]]) -> None:
    with httpx.Client(base_url=url, timeout=30) as client:
        for workspace, project, name in runs:
            detail = client.get(f"/api/runs/{workspace}/{project}/{name}").json()
            total = sum(s["point_count"] for s in detail["series"])
            print(f"\nrun {workspace}/{project}/{name}: {len(detail['series'])} series, "
                  f"{total:,} points, {len(detail['attributes'])} config attributes")
            shown: set[tuple[str, str]] = set()
            for s in detail["series"]:
                # One line per metric, not per environment or episode.
                if (s["metric_name"], s["scale"]) in shown:
                    continue
                shown.add((s["metric_name"], s["scale"]))
                same = [x for x in detail["series"]
                        if (x["metric_name"], x["scale"]) == (s["metric_name"], s["scale"])]
                last = s["last_point"] or {}
                value = last.get("value")
                shown_value = f"{value:.4f}" if isinstance(value, float) else str(value)
                labels = ",".join(f"{k}={v}" for k, v in s["labels"].items())
                print(f"  {s['metric_name']:<18} {s['scale']:<17} {labels:<16} "
                      f"series={len(same):<3} points={sum(x['point_count'] for x in same):<6} "
                      f"last={shown_value}")


def run_demo(url: str | None = None) -> int:
    """Log the two demo runs to ``url`` (or to a fresh local server) and print what was stored."""
    with ExitStack() as stack:
        if url is None:
            from .server import background_server

            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            info = stack.enter_context(background_server(tmp / "demo.sqlite3"))
            url = info.url
            print(f"started a local metrana server at {url} (database {info.db_path})")
        suffix = time.strftime("%Y%m%d-%H%M%S")
        ml = _ml_run(url, f"ml-{suffix}")
        print(f"ML run: {ml.summary()}")
        rl = _rl_run(url, f"rl-{suffix}")
        print(f"RL run: {rl.summary()}")
        _print_stored(url, [("demo", "mnist", f"ml-{suffix}"), ("demo", "cartpole", f"rl-{suffix}")])
        ok = ml.sent == ml.logged and rl.sent == rl.logged
        print("\nall points delivered" if ok else "\nSOME POINTS WERE NOT DELIVERED")
        return 0 if ok else 1

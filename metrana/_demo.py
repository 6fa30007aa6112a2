"""``metrana demo``: a short ML run and RL run logged to a local server, then read back.

The database is kept (``~/.metrana/demo.sqlite3`` unless ``--db`` says otherwise): the demo
ends by printing the commands to look at it, and those must still work after it exits.
"""

from __future__ import annotations

import math
import os
import random
import shlex
import sys
import time
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from ._api import close, init, log, session
from ._read_transport import HttpTransport, MetranaQueryError
from ._stats import Metrics

__all__ = ["DEFAULT_DEMO_DB", "run_demo"]

DEFAULT_DEMO_DB = Path.home() / ".metrana" / "demo.sqlite3"


def _ml_run(url: str, run_name: str) -> Metrics:
    init(
        workspace_name="demo", project_name="mnist", run_name=run_name,
        experiment_name="baseline", ingestion_url=url, close_strategy="CompleteAll",
        log_level="Warn",  # the demo prints the summary itself; warnings still show
        config={"optimizer": {"name": "adam", "lr": 3e-4, "betas": [0.9, 0.999]},
                "batch_size": 64, "epochs": 3},
    )
    rng = random.Random(0)
    try:
        for step in range(3000):
            loss = 2.3 * math.exp(-step / 800) + rng.random() * 0.05
            log({"train/loss": loss, "train/lr": 3e-4 * (1 - step / 3000)})
            if step % 500 == 499:
                log("val/accuracy", 1 - loss / 2.5, evaluation=True)
    except BaseException:
        # Ctrl-C: close now, while the demo's server still runs (the at-exit close would
        # wait for a server that is gone).
        close(timeout=5)
        raise
    return close()


def _rl_run(url: str, run_name: str) -> Metrics:
    rng = random.Random(1)
    with session(workspace_name="demo", project_name="cartpole", run_name=run_name,
                         ingestion_url=url, close_strategy="CompleteAll", log_level="Warn",
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


def _number(value: Any) -> str:
    """Enough significant digits for a learning rate of 1e-07 as for a loss of 0.0421."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _reader(url: str) -> HttpTransport:
    """The server's read API, with the key the demo's runs were logged with (if any)."""
    return HttpTransport(url.rstrip("/"), os.environ.get("METRANA_API_KEY") or None, timeout=30)


def _print_stored(url: str, runs: list[tuple[str, str, str]]) -> None:
    with closing(_reader(url)) as reader:
        for workspace, project, name in runs:
            detail = reader.call("run", {"workspace": workspace, "project": project,
                                         "run": name})
            total = sum(s["point_count"] for s in detail["series"])
            print(f"\nrun {workspace}/{project}/{name}: {len(detail['series'])} series, "
                  f"{total:,} points, {len(detail['attributes'])} config attributes")
            shown: set[tuple[str, str]] = set()
            notes: list[str] = []
            for s in detail["series"]:
                # One line per metric, not per environment or episode.
                if (s["metric_name"], s["scale"]) in shown:
                    continue
                shown.add((s["metric_name"], s["scale"]))
                same = [x for x in detail["series"]
                        if (x["metric_name"], x["scale"]) == (s["metric_name"], s["scale"])]
                last = s["last_point"] or {}
                labels = ",".join(f"{k}={v}" for k, v in s["labels"].items())
                print(f"  {s['metric_name']:<18} {s['scale']:<17} {labels:<16} "
                      f"series={len(same):<3} points={sum(x['point_count'] for x in same):<6} "
                      f"last={_number(last.get('value'))}")
                if s["kind"] == "rl" and len(same) > 1:
                    notes.append(_why_several(s["metric_name"], same))
            if notes:
                print("  (an RL series is identified by metric, scale, environment, episode and "
                      f"labels: {'; '.join(notes)})")


def _why_several(metric: str, series: list[dict[str, Any]]) -> str:
    """Why one RL metric is many series: environment and episode are part of its identity."""
    envs = {s["environment_id"] for s in series}
    evaluation = {s["environment_id"] for s in series
                  if (s.get("labels") or {}).get("evaluation") == "true"}
    episodes = {s["episode"] for s in series if s["episode"] is not None}
    where = (f"{len(envs)} environments" if not evaluation else
             f"{len(envs)} environments ({len(envs - evaluation)} training, "
             f"{len(evaluation)} evaluation)")
    parts = [where] + ([f"{len(episodes)} episodes"] if episodes else [])
    return f"{metric} is {len(series)} series, for {' x '.join(parts)}"


def _reachable(url: str) -> str | None:
    """None if a metrana server answers at ``url``, else what is wrong."""
    try:
        with closing(_reader(url)) as reader:
            reader.call("all_runs", {})
    except MetranaQueryError as exc:
        if exc.status is None:
            return f"{exc}; is 'metrana serve' running there?"
        if exc.status == 401:
            return (f"{url} needs an API key: set METRANA_API_KEY to a write key of the "
                    "workspace 'demo' (or the server's own key)")
        return f"{url} answered HTTP {exc.status}; is it a metrana server?"
    return None


def run_demo(url: str | None = None, db: Path | None = None) -> int:
    """Log the two demo runs to ``url`` (or to a local server on ``db``) and print what was
    stored and which commands show it again. Returns the exit status."""
    from ._exceptions import MetranaError
    from .server import background_server

    with ExitStack() as stack:
        if url is None:
            db = (db or DEFAULT_DEMO_DB).expanduser()
            info = stack.enter_context(background_server(db))
            url = info.url
            print(f"started a local metrana server at {url} for the demo "
                  f"(database {info.db_path}, kept after the demo)")
            source = f"--db {shlex.quote(str(info.db_path))}"
        else:
            problem = _reachable(url)
            if problem is not None:
                print(f"metrana demo: {problem}", file=sys.stderr)
                return 1
            source = f"--url {shlex.quote(url)}"
        suffix = time.strftime("%Y%m%d-%H%M%S")
        ml_name, rl_name = f"demo/mnist/ml-{suffix}", f"demo/cartpole/rl-{suffix}"
        try:
            print(f"logging {ml_name}: 3,000 training steps of loss and learning rate")
            ml = _ml_run(url, f"ml-{suffix}")
            print(f"  {ml.summary()}")
            print(f"logging {rl_name}: 20 PPO updates over 4 environments")
            rl = _rl_run(url, f"rl-{suffix}")
            print(f"  {rl.summary()}")
        except MetranaError as exc:
            print(f"metrana demo: {exc}", file=sys.stderr)
            return 1
        _print_stored(url, [("demo", "mnist", f"ml-{suffix}"), ("demo", "cartpole", f"rl-{suffix}")])
        ok = ml.sent == ml.logged and rl.sent == rl.logged
        print("\nall points delivered" if ok else "\nSOME POINTS WERE NOT DELIVERED")
        print("\nnext:")
        print(f"  metrana runs {source}")
        print(f"  metrana export {rl_name} {source} -o rl.csv")
        if source.startswith("--url"):
            print(f"  open {url} in a browser")
        else:
            print(f"  metrana serve {source}      # then open the URL it prints in a browser")
        return 0 if ok else 1

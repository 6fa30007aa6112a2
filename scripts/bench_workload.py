"""One benchmark workload, run in its own process by ``scripts/bench.py``.

Kept free of anything but the ``metrana`` API the seed client also has (``init``, ``log``,
``log_rl_environment_step``, ``close``), so the very same file measures our client and the seed
client (``metrana==0.2.1``) from another virtualenv. Prints one JSON object.

    python bench_workload.py cost URL
    python bench_workload.py amortized URL [--rounds 5 --calls 200000 --metrics 4]
    python bench_workload.py e2e URL --points N --metrics M [--queue Q]
    python bench_workload.py episodes URL [--rounds 50 --envs 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
import uuid
from typing import Any

import metrana

BURST = 1000


def start(url: str, **extra: Any) -> str:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    metrana.init(api_key="bench", workspace_name="bench", project_name="bench", run_name=name,
                 ingestion_url=url, close_strategy="complete_all", log_level="error", **extra)
    return name


def median_cost(fn, calls: int, per_call: int = 1) -> float:  # type: ignore[no-untyped-def]
    samples = []
    for _ in range(max(calls // BURST, 1)):
        t0 = time.perf_counter()
        fn(BURST)
        samples.append((time.perf_counter() - t0) / BURST * 1e6 * per_call)
    return statistics.median(samples)


def cost(url: str, calls: int) -> dict[str, float]:
    start(url)
    log = metrana.log
    values = {f"metric_{k}": 0.5 for k in range(8)}
    env_log = metrana.log_rl_environment_step
    rl_step = [0]

    def scalar(n: int) -> None:
        for _ in range(n):
            log("loss", 0.5)

    def dict8(n: int) -> None:
        for _ in range(n // 8):
            log(values)

    def env(n: int) -> None:
        step = rl_step[0]
        for _ in range(n):
            env_log("reward", 1.0, rl_step=step, env_id="env-0", episode=0)
        rl_step[0] = step + 1

    result = {
        "log": median_cost(scalar, calls),
        "log_dict8": median_cost(dict8, calls, per_call=8),
        "log_rl_environment_step": median_cost(env, calls),
    }
    metrana.close()
    return result


def amortized(url: str, rounds: int, calls: int, metrics: int) -> dict[str, object]:
    """``log()`` as a training loop feels it: tight loops of ``calls`` calls over ``metrics``
    names against a live engine, each timed whole — including the moments the engine thread
    holds the interpreter — and the median round's time per call."""
    start(url)
    log = metrana.log
    names = [f"metric_{m}" for m in range(metrics)] * (calls // metrics + 1)
    per_call = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for i in range(calls):
            log(names[i], 0.5)
        per_call.append((time.perf_counter() - t0) / calls * 1e6)
    metrana.close()
    # "mean": every round's time, so that a rare event (a system metrics reading) is counted.
    return {"amortized": statistics.median(per_call), "mean": statistics.fmean(per_call),
            "rounds": per_call}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def e2e(url: str, points: int, metrics: int, queue: int | None) -> dict[str, object]:
    names = [f"metric_{m}" for m in range(metrics)]
    extra: dict[str, object] = {}
    if queue:
        extra = {"event_queue_max_size": queue, "backpressure_strategy": "Block"}
    name = start(url, **extra)
    log = metrana.log
    cpu0, main0 = cpu_seconds(), time.thread_time()
    t0 = time.perf_counter()
    for i in range(points):
        log(names[i % metrics], float(i))
    logged = time.perf_counter() - t0
    metrana.close()
    total = time.perf_counter() - t0
    # The process's CPU time, less this (the caller's) thread's: the engine's share.
    engine_cpu = (cpu_seconds() - cpu0) - (time.thread_time() - main0)
    return {"run": name, "points": points, "log_seconds": logged, "total_seconds": total,
            "rate": points / total, "engine_cpu_us": engine_cpu / points * 1e6,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def vector(url: str, points: int) -> dict[str, object]:
    """RL env-step points as [64 envs x 1000 steps] blocks (our client only)."""
    import numpy as np

    name = start(url)
    envs = [f"env-{e}" for e in range(64)]
    block = np.random.default_rng(0).random((64, 1000))
    blocks = max(points // block.size, 1)
    t0 = time.perf_counter()
    for k in range(blocks):
        metrana.log_rl_environment_step("reward", block, rl_step=k, env_id=envs, episode=0)
    logged = time.perf_counter() - t0
    metrana.close()
    total = time.perf_counter() - t0
    n = blocks * block.size
    return {"run": name, "points": n, "client_rate": n / logged, "rate": n / total}


def episodes(url: str, bursts: int, envs: int) -> dict[str, object]:
    """Finished episodes of ``envs`` environments per call (our client only): the vectorized
    ``log_rl_episode`` beside the vectorized ``log_rl_environment_step`` of the same [envs]
    values, and the loop of scalar ``log_rl_episode`` calls it replaces. µs per call, medians
    of bursts of 100 calls, the three taking turns burst by burst (the noise, and the engine
    catching up on the previous burst, hit them alike)."""
    import numpy as np

    start(url)
    ids = [f"env-{e}" for e in range(envs)]
    values = np.random.default_rng(0).random(envs)
    floats = values.tolist()
    rl_step = [0]

    def env_steps() -> None:
        metrana.log_rl_environment_step("reward", values, rl_step=rl_step[0], env_id=ids,
                                        episode=0)

    def vectorized() -> None:
        metrana.log_rl_episode("return", values, rl_step=rl_step[0], env_id=ids)

    def loop() -> None:
        for env, value in zip(ids, floats):  # noqa: B905 - the loop a user would write
            metrana.log_rl_episode("return_loop", value, rl_step=rl_step[0], env_id=env)

    cases = {"env_step_vector": env_steps, "episode_vector": vectorized, "episode_loop": loop}
    samples: dict[str, list[float]] = {case: [] for case in cases}
    order = list(cases.items())
    for burst in range(bursts):
        for case, fn in order[burst % 3:] + order[:burst % 3]:  # no case always runs first
            t0 = time.perf_counter()
            for _ in range(100):
                fn()
                rl_step[0] += 1
            samples[case].append((time.perf_counter() - t0) / 100 * 1e6)
    final = metrana.close()
    out: dict[str, object] = {case: statistics.median(v) for case, v in samples.items()}
    out["complete"] = final.sent == final.logged == 3 * bursts * 100 * envs
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=("cost", "amortized", "e2e", "vector", "episodes"))
    parser.add_argument("url")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--metrics", type=int, default=16)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--envs", type=int, default=64)
    args = parser.parse_args()
    out: dict[str, object]
    if args.what == "cost":
        out = dict(cost(args.url, args.calls))
    elif args.what == "amortized":
        out = amortized(args.url, args.rounds, args.calls, args.metrics)
    elif args.what == "vector":
        out = vector(args.url, args.points)
    elif args.what == "episodes":
        out = episodes(args.url, args.rounds, args.envs)
    else:
        out = e2e(args.url, args.points, args.metrics, args.queue or None)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Cost of one ``log()`` call, in microseconds, against a real ``metrana serve`` process.

Each repetition times a tight loop of calls in bursts of 1,000 (the engine thread runs and
ships the points meanwhile, as in a real job); the table shows, as the median over
repetitions, the median burst's µs per call and the overall mean, next to a same-run
baseline (appending a tuple to a list under a lock, about the least any thread-safe logger
can do) so noisy-machine numbers stay comparable.

    python scripts/bench_log.py [--calls 200000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(__file__))

from bench_server import start_server  # noqa: E402

import metrana  # noqa: E402

BURST = 1000


def per_call(fn: Callable[[int], None], calls: int) -> tuple[float, float]:
    """(median µs per call over bursts of BURST calls, mean µs per call over all calls).

    The median burst is the typical call; the mean also carries the engine thread's share of
    the GIL (it encodes and ships the points meanwhile), so it is the cost a pure-Python loop
    pays on average.
    """
    samples = []
    start = time.perf_counter()
    for _ in range(calls // BURST):
        t0 = time.perf_counter()
        fn(BURST)
        samples.append((time.perf_counter() - t0) / BURST * 1e6)
    mean = (time.perf_counter() - start) / calls * 1e6
    return statistics.median(samples), mean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(os.path.join(tmp, "bench.sqlite3"))
        try:
            run = metrana.session(workspace_name="bench", project_name="log",
                                  run_name=f"log-{time.time_ns()}", ingestion_url=url,
                                  close_strategy="CompleteAll", log_level="Warn")
            lock = threading.Lock()
            sink: list[object] = []

            def baseline(n: int) -> None:
                for i in range(n):
                    with lock:
                        sink.append(("loss", None, None, 0.5, i))
                sink.clear()

            def scalar(n: int) -> None:
                log = run.log
                for _ in range(n):
                    log("loss", 0.5)

            values = {f"metric_{k}": 0.5 for k in range(8)}

            def dict8(n: int) -> None:
                log = run.log
                for _ in range(n // 8):
                    log(values)

            rl_step = [0]

            def env_step(n: int) -> None:
                log = run.log_rl_environment_step
                step = rl_step[0]
                for _ in range(n):
                    log("reward", 1.0, rl_step=step, env_id="env-0", episode=0)
                rl_step[0] = step + 1

            cases = [("baseline: locked list append", baseline, 1),
                     ("log(name, value)", scalar, 1),
                     ("log(dict of 8) per value", dict8, 1),
                     ("log(dict of 8) per call", dict8, 8),
                     ("log_rl_environment_step", env_step, 1)]
            results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in cases}
            for _ in range(args.repeat):
                for name, fn, scale in cases:
                    median, mean = per_call(fn, args.calls)
                    results[name].append((median * scale, mean * scale))
            metrics = run.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    print(f"{'case':<32} {'median µs/call':>15} {'mean µs/call (with engine)':>27}")
    for name, samples in results.items():
        medians = [m for m, _ in samples]
        means = [m for _, m in samples]
        print(f"{name:<32} {statistics.median(medians):>15.3f} {statistics.median(means):>27.3f}")
    print(f"delivered {metrics.sent:,} of {metrics.logged:,} points "
          f"({args.repeat} repetitions of {args.calls:,} calls per case)")
    return 0 if metrics.sent == metrics.logged else 1


if __name__ == "__main__":
    sys.exit(main())

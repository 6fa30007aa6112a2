"""Vectorized episodes: ``log_rl_episode(env_id=[M ids], values [M])`` against the vectorized
``log_rl_environment_step`` of the same shape (the speed it should match) and the loop of M
scalar calls it replaces, for several M, each repetition in a fresh process, into the counting
sink (``scripts/counting_sink.py``). Prints medians, µs per call and per point.

    python scripts/bench_episodes.py [--repeat 5] [--bursts 50] [--envs 8 64 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench import start, workload  # noqa: E402

CASES = (("env_step_vector", "log_rl_environment_step, [M] values"),
         ("episode_vector", "log_rl_episode, [M] values"),
         ("episode_loop", "M scalar log_rl_episode calls"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--bursts", type=int, default=50, help="bursts of 100 calls per case")
    parser.add_argument("--envs", type=int, nargs="+", default=[8, 64, 256])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "METRANA_SPOOL_DIR": str(Path(tmp) / "spool"),
               "METRANA_CLOSE_TIMEOUT": "600", "METRANA_LOG_LEVEL": "Error"}
        sink, url = start([sys.executable, str(HERE / "counting_sink.py")])
        try:
            for envs in args.envs:
                runs = [workload(sys.executable, env, "episodes", url, "--rounds", args.bursts,
                                 "--envs", envs) for _ in range(args.repeat)]
                if not all(r["complete"] for r in runs):
                    print(f"M={envs}: not every point was delivered", file=sys.stderr)
                    return 1
                for case, label in CASES:
                    per_call = statistics.median(float(r[case]) for r in runs)
                    rows.append((envs, label, per_call, per_call / envs))
        finally:
            sink.terminate()
            sink.communicate(timeout=30)
    print(f"\nmedians of {args.repeat} runs x {args.bursts} bursts of 100 calls; "
          f"{time.strftime('%Y-%m-%d %H:%M')}; {os.cpu_count()} cores")
    print(f"{'M':>5}  {'call':<34}{'µs/call':>10}{'µs/point':>10}")
    for envs, label, per_call, per_point in rows:
        print(f"{envs:>5}  {label:<34}{per_call:>10.2f}{per_point:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

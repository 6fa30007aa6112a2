"""Before and after, in the same run: the client from two source trees, measured alternately.

This machine is shared and noisy: a number measured an hour ago is no baseline. This runs the
same workloads (``scripts/bench_workload.py``) with the ``metrana`` package of tree A and of
tree B, alternating A/B each round, against one counting sink and one ``metrana serve``, and
prints the medians side by side.

    git worktree add /tmp/before <commit>
    python scripts/bench_compare.py /tmp/before [.] [--repeat 5] [--points 1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from bench import served_count, sink_count, start  # noqa: E402

WORKLOAD = HERE / "bench_workload.py"


def run(tree: Path, env: dict[str, str], *args: object) -> dict[str, Any]:
    """One workload with ``tree``'s metrana first on the path."""
    environment = {**env, "PYTHONPATH": str(tree)}
    # Run from the temp dir: `python -c` puts the working directory first on the path.
    cwd = env["METRANA_SPOOL_DIR"]
    Path(cwd).mkdir(parents=True, exist_ok=True)
    check = subprocess.run([sys.executable, "-c", "import metrana; print(metrana.__file__)"],
                           capture_output=True, text=True, env=environment, check=True, cwd=cwd)
    assert Path(check.stdout.strip()).is_relative_to(tree.resolve()), check.stdout
    done = subprocess.run([sys.executable, str(WORKLOAD), *map(str, args)], capture_output=True,
                          text=True, env=environment, timeout=1800, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"{tree}: workload {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path, nargs="?", default=HERE.parent)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--points", type=int, default=1_000_000)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, dict[str, list[float]]] = {name: {} for name in trees}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "METRANA_SPOOL_DIR": str(Path(tmp) / "spool"),
               "METRANA_CLOSE_TIMEOUT": "600", "METRANA_LOG_LEVEL": "Error"}
        sink, sink_url = start([sys.executable, str(HERE / "counting_sink.py")])
        serve, serve_url = start([sys.executable, "-m", "metrana", "serve", "--port", "0",
                                  "--db", str(Path(tmp) / "compare.sqlite3")])
        try:
            for round_index in range(args.repeat):
                order = list(trees) if round_index % 2 == 0 else list(reversed(trees))
                for name in order:
                    tree, out = trees[name], results[name]
                    cost = run(tree, env, "cost", sink_url, "--calls", 200_000)
                    for case in ("log", "log_dict8", "log_rl_environment_step"):
                        out.setdefault(f"{case} (burst median)", []).append(cost[case])
                    amortized = run(tree, env, "amortized", serve_url, "--rounds", 5,
                                    "--calls", 200_000, "--metrics", 4)
                    out.setdefault("log, amortized (into serve)", []).append(
                        amortized["amortized"])
                    for label, url, count in (("sink", sink_url, sink_count),
                                              ("serve", serve_url, served_count)):
                        e2e = run(tree, env, "e2e", url, "--points", args.points, "--metrics", 16)
                        stored = count(url, e2e["run"])
                        if stored != args.points:
                            failures.append(f"{name} -> {label}: stored {stored:,}")
                        out.setdefault(f"e2e -> {label} (points/s)", []).append(e2e["rate"])
                        out.setdefault(f"engine CPU -> {label} (µs/point)", []).append(
                            e2e["engine_cpu_us"])
        finally:
            for proc in (sink, serve):
                proc.terminate()
                proc.communicate(timeout=30)
    print(f"\nmedians of {args.repeat} alternating rounds; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{os.cpu_count()} cores; before={trees['before']} after={trees['after']}")
    width = max(len(k) for k in results["before"])
    print(f"{'':<{width}}  {'before':>12}  {'after':>12}  {'after/before':>12}")
    for key, before_values in results["before"].items():
        b, a = statistics.median(before_values), statistics.median(results["after"][key])
        print(f"{key:<{width}}  {b:>12,.3f}  {a:>12,.3f}  {a / b:>12.2f}")
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())

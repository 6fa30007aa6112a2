"""Groups compared with statistical confidence: the server's ``compare_groups`` answer, timed
in process (the route as the app calls it: runs' scores read from the store, then the
bootstrap), against ``rliable`` called directly on the same scores.

Cases, each over 10 groups × 20 runs (an RL ``return`` per run, 2 environments × 50 episodes,
scored by the mean of each environment's last 10 episodes), 2,000 bootstrap repetitions:

- **aggregates**: IQM, median, mean, optimality gap with their 95% intervals (one task, and
  4 tasks × 5 seeds per group);
- **+ profile**: and performance profiles at 51 thresholds;
- **+ improvement**: and the probability of improvement of every ordered pair (90 pairs);
- **baseline** in the same run: ``aggregate_runs`` (the grouped chart) on the same runs, and
  ``rliable.library.get_interval_estimates`` on the same scores (aggregates only).

Goal (issue 30): 10 groups × 20 runs, 2,000 repetitions, ≤ 1 s on the server. Medians of
``--repeat`` runs.

    python scripts/bench_stats.py [--repeat 5] [--reps 2000] [--skip-rliable]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from bench_timing import timed

from metrana.server.read_api import answer
from metrana.server.store import Store

GROUPS, RUNS, EPISODES = 10, 20, 50


def write(db: Path, project: str, tasks: int) -> None:
    """10 algorithms × ``tasks`` tasks × 20 / ``tasks`` seeds."""
    store = Store(db)
    rng = np.random.default_rng(0)
    try:
        for g in range(GROUPS):
            for task in range(tasks):
                for seed in range(RUNS // tasks):
                    name = f"algo{g}-task{task}-s{seed}"
                    store.create_run({"run": {"workspace": "bench", "project": project,
                                              "run_name": name},
                                      "create_project_if_missing": True})
                    store.update_runs({"session_id": 1, "run_updates": [{
                        "workspace": "bench", "project": project, "run_name": name,
                        "attributes": [{"path": "config/algo", "string_value": f"algo{g}"},
                                       {"path": "config/task", "string_value": f"task{task}"},
                                       {"path": "config/seed", "int_value": seed}],
                        "rl_series": [{
                            "metric_name": "return", "scale": "EPISODE", "ordering": 1,
                            "environment_id": f"env-{env}",
                            "points": [{"major_step": 100 * k, "minor_step": k,
                                        "timestamp": 1 + k,
                                        "float_value": float(g + task + rng.normal(0, 3))}
                                       for k in range(EPISODES)]} for env in range(2)],
                        "close_run": {}}]})
    finally:
        store.close()



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reps", type=int, default=2000)
    parser.add_argument("--skip-rliable", action="store_true",
                        help="no rliable baseline (it takes seconds per call)")
    args = parser.parse_args()
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.sqlite3"
        write(db, "one-task", 1)
        write(db, "four-tasks", 4)
        store = Store(db)
        try:
            base = {"workspace": "bench", "series": "return", "group_by": ["config/algo"],
                    "reps": args.reps, "seed": 0}

            def ask(project: str, **extra: Any) -> dict[str, Any]:
                body = {**base, "project": project, **extra}
                encoded = answer(store, "compare_groups", body)
                assert isinstance(encoded, bytes)
                found: dict[str, Any] = orjson.loads(encoded)
                return found

            ask("one-task")  # imports rliable and scipy once, as a server's first request does
            cases = [
                ("aggregates, 1 task", lambda: ask("one-task")),
                ("aggregates, 4 tasks × 5 seeds",
                 lambda: ask("four-tasks", task_key="config/task")),
                ("+ profile (51 thresholds)", lambda: ask("one-task", profile=True)),
                ("+ improvement (90 pairs)", lambda: ask("one-task", improvement="all")),
                ("all three", lambda: ask("one-task", profile=True, improvement="all")),
                ("baseline: aggregate_runs (grouped chart)",
                 lambda: answer(store, "aggregate_runs", {
                     "workspace": "bench", "project": "one-task", "series": "return",
                     "group_by": ["config/algo"], "n": 1000})),
            ]
            result: dict[str, Any] = {}
            for label, fn in cases:
                median, found = timed(fn, args.repeat)
                rows.append((label, median))
                if label == "aggregates, 1 task":
                    result = found
            if not args.skip_rliable:
                from rliable import library, metrics

                scores = {g["label"]: np.array(g["scores"]).T for g in result["groups"]}

                def aggregates(x: np.ndarray) -> np.ndarray:
                    return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x),
                                     metrics.aggregate_mean(x),
                                     metrics.aggregate_optimality_gap(x)])

                def direct() -> Any:
                    np.random.seed(0)
                    return library.get_interval_estimates(scores, aggregates, reps=args.reps)

                median, (_, intervals) = timed(direct, max(1, args.repeat // 2))
                rows.append(("baseline: rliable.get_interval_estimates", median))
                same = all(np.allclose([g["aggregates"][a][k] for a in g["aggregates"]],
                                       intervals[g["label"]][i], rtol=1e-12)
                           for g in result["groups"]
                           for i, k in enumerate(("ci_low", "ci_high")))
                print(f"intervals equal to rliable's: {same}")
        finally:
            store.close()
    print(f"{GROUPS} groups × {RUNS} runs, {args.reps:,} repetitions; median of "
          f"{args.repeat} (server side, in process; ms)")
    print(f"{'case':<44}{'ms':>10}")
    for label, median in rows:
        print(f"{label:<44}{median:>10.1f}")


if __name__ == "__main__":
    main()

"""Merged (log_distributed) reads: what charting a metric written by W processes costs.

For 1M points in all (W writers x 1M/W steps, each writer's series stored as clients write it:
10,000-point requests of one session, manual steps), ``Store.merged(n=1000)`` over the whole
range and over a 1% zoom is timed (median of ``--repeat``), against the baseline of the same
run: ``Store.series_buckets`` of one plain series of 1M points. The merged answer is checked
against numpy (count per bucket, min and max exact; with a bucket per step, the mean across
writers). Default store: a SQLite file; ``--db postgresql://...`` for PostgreSQL.

    python scripts/bench_merged.py [--writers 1,4,8,32] [--points 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_timing import timed

from metrana.server.store import Store
from metrana.server.store.filters import SeriesName


def requests(run: str, metric: str, labels: dict[str, str], steps: int, seed: int
             ) -> Iterator[dict[str, Any]]:
    """One writer's series as UpdateRunsRequest dicts of 10,000 points (absolute steps)."""
    rng = np.random.default_rng(seed)
    base_ns = time.time_ns()
    for start in range(0, steps, 10_000):
        xs = np.arange(start, min(steps, start + 10_000))
        values = np.exp(-xs / steps * 3) + rng.random(xs.size) * 0.1
        yield {"session_id": seed + 1, "run_updates": [{
            "workspace": "bench", "project": "merged", "run_name": run,
            "series": [{"metric_name": metric, "scale": "ML_STEP", "ordering": 2,
                        "labels": labels,
                        "points": [{"step": int(s), "timestamp": base_ns + int(s) * 1000,
                                    "float_value": float(v)}
                                   for s, v in zip(xs, values, strict=True)]}]}]}


def expected(steps: int, writers: int) -> np.ndarray:
    """Every writer's values (writers x steps), as :func:`requests` made them."""
    out = np.empty((writers, steps))
    for w in range(writers):
        rng = np.random.default_rng(w)
        xs = np.arange(steps)
        noise = np.concatenate([rng.random(min(10_000, steps - s)) for s in range(0, steps, 10_000)])
        out[w] = np.exp(-xs / steps * 3) + noise * 0.1
    return out



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", default="1,4,8,32")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", default=None, help="a database URL (default: a SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(args.db or str(Path(tmp) / "bench.sqlite3"))
        run = "r"
        store.create_run({"run": {"workspace": "bench", "project": "merged", "run_name": run},
                          "create_project_if_missing": True})
        for request in requests(run, "plain", {}, args.points, 999):
            store.update_runs(request)
        plain_id = json.loads(store.series_buckets("bench", "merged", run, SeriesName(
            "plain", "ML_STEP", "{}", "standard"), 1, None, None))["series_id"]
        base_full, _ = timed(lambda: store.series_buckets(
            "bench", "merged", run, plain_id, 1000, None, None), args.repeat)
        base_zoom, _ = timed(lambda: store.series_buckets(
            "bench", "merged", run, plain_id, 1000, 0, args.points // 100), args.repeat)
        print(f"{'writers':>8} {'steps':>9} {'merged full ms':>15} {'merged 1% ms':>13} "
              f"{'plain full ms':>14} {'plain 1% ms':>12}")
        for writers in (int(w) for w in args.writers.split(",")):
            steps = args.points // writers
            metric = f"loss{writers}"
            for w in range(writers):
                for request in requests(run, metric, {"writer": str(w)}, steps, w):
                    store.update_runs(request)
            def read(start: int | None, end: int | None, m: str = metric) -> bytes:
                return store.merged("bench", "merged", run, m, labels={}, scale=None, n=1000,
                                    start=start, end=end)

            full, answer = timed(lambda: read(None, None), args.repeat)
            zoom, _ = timed(partial(read, 0, steps // 100), args.repeat)
            merged = json.loads(answer)
            table = expected(steps, writers)
            assert sum(merged["count"]) == writers * steps
            assert min(merged["min"]) == table.min() and max(merged["max"]) == table.max()
            exact = json.loads(store.merged("bench", "merged", run, metric, labels={},
                                            scale=None, n=1000, start=0, end=999))
            np.testing.assert_allclose(exact["mean"], table[:, :1000].mean(axis=0), rtol=1e-12)
            print(f"{writers:>8} {steps:>9,} {full:>15.1f} {zoom:>13.1f} {base_full:>14.1f} "
                  f"{base_zoom:>12.1f}")
        store.close()


if __name__ == "__main__":
    main()

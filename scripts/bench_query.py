"""metrana.query read latency: a runs table of 1,000 runs, and a 1M-point series, as DataFrames.

A fresh store (SQLite file, or PostgreSQL with ``--store postgresql`` / ``--db URL``) is filled
through the store's write path (the requests clients send): ``--runs`` runs with three config
attributes and two series, and one run whose ``loss`` has ``--points`` points. Then, through a
real ``metrana serve`` process over loopback HTTP (and, on SQLite, also with the database
opened in-process, ``QueryClient(db=...)``), the median of ``--repeat`` calls of:

- ``fetch_runs`` of every run with 3 attribute and 2 summary columns (goal: 200 ms);
- the same with a filter and an ordering on a series summary, evaluated in SQL;
- ``fetch_float_series`` of the 1M-point series (goal: 1 s);
- ``fetch_float_series_buckets`` of it (1,000 buckets).

    python scripts/bench_query.py [--runs 1000] [--points 1000000] [--store postgresql]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_timing import timed as median_ms  # noqa: E402

from metrana.query import AttrFilter, QueryClient, SeriesFilter, SeriesOrderBy  # noqa: E402
from metrana.server.store import Store  # noqa: E402

WORKSPACE, PROJECT = "bench", "query"


def _series(name: str, values: Any, start: int = 0) -> dict[str, Any]:
    t0 = 1_700_000_000_000_000_000
    return {"metric_name": name, "scale": "ML_STEP", "ordering": 1,
            "points": [{"step": start + i, "timestamp": t0 + (start + i) * 1000,
                        "float_value": float(v)} for i, v in enumerate(values)]}


def fill(store: Store, runs: int, points: int) -> None:
    """``runs`` runs (config lr, optimizer, batch_size; 100 points of loss and acc each) and
    one run ``big`` whose loss has ``points`` points, written in 10,000-point requests."""
    rng = np.random.default_rng(0)
    for i in range(runs):
        name = f"run-{i:04d}"
        store.create_run({"run": {"workspace": WORKSPACE, "project": PROJECT, "run_name": name},
                          "create_project_if_missing": True})
        loss = np.exp(-np.arange(100) / 30) * (1 + rng.random())
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": WORKSPACE, "project": PROJECT, "run_name": name,
            "series": [_series("loss", loss), _series("acc", 1 - loss / 2)],
            "attributes": [{"path": "config/lr", "float_value": float(10 ** -rng.uniform(1, 5))},
                           {"path": "config/optimizer", "string_value": ["adam", "sgd"][i % 2]},
                           {"path": "config/batch_size", "int_value": 32 * (1 + i % 4)}],
            "close": True}]})
    store.create_run({"run": {"workspace": WORKSPACE, "project": PROJECT, "run_name": "big"},
                      "create_project_if_missing": True})
    for start in range(0, points, 10_000):
        n = min(10_000, points - start)
        values = 2 * np.exp(-(start + np.arange(n)) / points * 5) + rng.random(n) * 0.05
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": WORKSPACE, "project": PROJECT, "run_name": "big",
            "series": [_series("loss", values, start)]}]})


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Median milliseconds of ``repeat`` calls, after one to warm connections and caches."""
    fn()
    return median_ms(fn, repeat)


@contextlib.contextmanager
def target(store_kind: str, db: str | None, tmp: str) -> Iterator[str]:
    if db is not None:
        yield db
    elif store_kind == "postgresql":
        from tests.pgcluster import throwaway_cluster

        with throwaway_cluster(durable=True) as cluster:
            yield cluster.url(cluster.create_database())
    else:
        yield os.path.join(tmp, "query.sqlite3")


def measure(client: QueryClient, runs: int, points: int, repeat: int
            ) -> list[tuple[str, float, str]]:
    rows = []
    ms, frame = timed(lambda: client.fetch_runs(
        attributes=["config/lr", "config/optimizer", "config/batch_size"],
        series_summaries=["loss:last", "acc:max"]), repeat)
    assert len(frame) == runs + 1, len(frame)
    rows.append((f"fetch_runs: {runs + 1:,} runs, 3 attributes + 2 summaries", ms, "200 ms"))
    ms, frame = timed(lambda: client.fetch_runs(
        filter=(AttrFilter("config/lr") < 0.001) & (SeriesFilter("loss").last() < 1.0),
        order_by=SeriesOrderBy("acc", "max").desc(),
        attributes=["config/lr", "config/optimizer", "config/batch_size"],
        series_summaries=["loss:last", "acc:max"]), repeat)
    rows.append((f"  same, filtered + ordered in SQL ({len(frame)} runs)", ms, ""))
    ms, frame = timed(lambda: client.fetch_float_series("big", "loss"), max(3, repeat // 2))
    assert len(frame) == points, len(frame)
    rows.append((f"fetch_float_series: {points:,} points", ms, "1 s"))
    ms, frame = timed(lambda: client.fetch_float_series_buckets("big", "loss"), repeat)
    rows.append((f"fetch_float_series_buckets: {points:,} points, 1,000 buckets", ms, ""))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    args = parser.parse_args()
    from tests.support import start_serve, stop_serve

    with tempfile.TemporaryDirectory() as tmp, target(args.store, args.db, tmp) as db:
        t0 = time.perf_counter()
        store = Store(db)
        fill(store, args.runs, args.points)
        store.close()
        filled = time.perf_counter() - t0
        proc, url = start_serve(db)
        try:
            with QueryClient(WORKSPACE, PROJECT, url=url) as client:
                results = [("HTTP to metrana serve", measure(client, args.runs, args.points,
                                                              args.repeat))]
        finally:
            stop_serve(proc)
        if not db.startswith("postgresql://"):
            with QueryClient(WORKSPACE, PROJECT, db=db) as local:
                results.append(("QueryClient(db=...) in-process",
                                measure(local, args.runs, args.points, args.repeat)))
    kind = "PostgreSQL" if db.startswith("postgresql://") else "SQLite"
    print(f"\n{kind}; medians of {args.repeat} (points: of {max(3, args.repeat // 2)}); filled "
          f"in {filled:.0f} s; {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores")
    for where, rows in results:
        print(f"\n{where}")
        print(f"{'read':<62} {'median':>10} {'goal':>8}")
        for label, ms, goal in rows:
            print(f"{label:<62} {ms:>7.0f} ms {goal:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Chart reads: bucket query latency and bytes per stored point, by series size.

For each size (10k, 100k, 1M, 10M points by default) one series is written into a fresh
store (SQLite file, or ``--db postgresql://...``) the way clients write it — 10,000-point
requests of one session — then ``buckets(n=1000)`` over the full range and over a 1% zoom is
timed (median of ``--repeat``), checked against the raw data (min and max must be exact), and
the database's growth is divided by the points stored. On PostgreSQL the size is taken
after ``VACUUM ANALYZE`` (what autovacuum would soon do: dead row versions left by updates
become free space, which the files keep); both numbers are printed. Without ``--db`` on
PostgreSQL (``--store postgresql``) a throwaway cluster with default durability is started.

    python scripts/bench_buckets.py [--sizes 10000,100000,1000000,10000000]
                                    [--store postgresql | --db URL]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from bench_timing import timed

from metrana.server.store import Store

# The throwaway PostgreSQL cluster of the tests (tests/pgcluster.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def requests(points: int, run: str, seed: int = 0) -> Any:
    """UpdateRunsRequest dicts (as the validator returns them) for one series, with spikes."""
    rng = np.random.default_rng(seed)
    base_ns = time.time_ns()
    for start in range(0, points, 10_000):
        n = min(10_000, points - start)
        steps = np.arange(start, start + n)
        values = 2.0 * np.exp(-steps / max(points, 1) * 5) + rng.random(n) * 0.05
        values[rng.random(n) < 1e-4] = 50.0  # rare spikes a chart must not hide
        ts = base_ns + steps * 1_000_000 + rng.integers(0, 1000, n)
        yield {"session_id": 7, "run_updates": [{
            "workspace": "bench", "project": "buckets", "run_name": run,
            "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                        "points": [{"step": int(s), "timestamp": int(t), "float_value": float(v)}
                                   for s, t, v in zip(steps, ts, values, strict=True)]}]}]}


def database_bytes(target: str, *, vacuum: bool = False) -> int:
    """The database's size on disk: a SQLite file with its WAL (after a checkpoint), or
    ``pg_database_size`` (every table, index, TOAST and free-space map of the database)."""
    if not target.startswith("postgresql://"):
        import sqlite3

        with sqlite3.connect(target) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(target)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(target, autocommit=True) as conn:
        if vacuum:
            conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--db", default=None, help="a PostgreSQL URL (default: a SQLite file)")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql without --db: a throwaway cluster")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        cluster = None
        if args.db is None and args.store == "postgresql":
            from tests.pgcluster import throwaway_cluster

            cluster = stack.enter_context(throwaway_cluster(durable=True))
        for size in (int(s) for s in args.sizes.split(",")):
            target = (args.db or (cluster.url(cluster.create_database()) if cluster else
                                  os.path.join(tmp, f"b{size}.sqlite3")))
            store = Store(target)
            run = f"b{size}-{time.time_ns()}"
            store.create_run({"run": {"workspace": "bench", "project": "buckets",
                                      "run_name": run}, "create_project_if_missing": True})
            empty = database_bytes(target, vacuum=True)
            t0 = time.perf_counter()
            for request in requests(size, run):
                store.update_runs(request)
            ingest = size / (time.perf_counter() - t0)
            (series,) = store.get_run("bench", "buckets", run)["series"]
            ids, lo, hi = [series["id"]], size // 2, size // 2 + max(size // 100, 1)
            full_ms, full = timed(partial(store.buckets, ids, args.n), args.repeat)
            zoom_ms, _ = timed(partial(store.buckets, ids, args.n, lo, hi), args.repeat)
            exact = (max(v for v in full["max"] if v is not None) == series["summary"]["max"]
                     and min(v for v in full["min"] if v is not None)
                     == series["summary"]["min"])
            raw_per_point = (database_bytes(target) - empty) / size
            per_point = (database_bytes(target, vacuum=True) - empty) / size
            rows.append((size, full_ms, zoom_ms, len(full["x"]), exact, per_point, ingest,
                         raw_per_point))
            store.close()
            if store.path is not None:
                for f in Path(tmp).glob(f"b{size}.sqlite3*"):
                    f.unlink()
    pg = args.db is not None or args.store == "postgresql"
    where = "PostgreSQL (bytes/point after VACUUM ANALYZE; before it in brackets)" if pg \
        else "SQLite"
    print(f"\n{where}; buckets n={args.n}; medians of {args.repeat}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'points':>12} {'full range':>11} {'1% zoom':>9} {'buckets':>8} {'min/max exact':>14} "
          f"{'bytes/point':>12} {'store ingest':>14}")
    for size, full_ms, zoom_ms, count, exact, per_point, ingest, raw in rows:
        before = f" [{raw:.1f}]" if pg else ""
        print(f"{size:>12,} {full_ms:>8.1f} ms {zoom_ms:>6.1f} ms {count:>8,} "
              f"{'yes' if exact else 'NO':>14} {per_point:>12.1f}{before} {ingest:>10,.0f} pt/s")
    return 0 if all(r[4] for r in rows) and all(math.isfinite(r[1]) for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

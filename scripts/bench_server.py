"""Ingest speed of ``metrana serve``: POST N points in 10,000-point requests, print points/s.

Starts real servers (their own processes) on a real database — a SQLite file in a temp dir,
or PostgreSQL: ``--db postgresql://...``, else a throwaway cluster with PostgreSQL's default
durability (fsync, synchronous commit) — unless ``--url`` is given. Request bodies are built
up front so the client's cost is not measured; each client posts its requests one after
another over one keep-alive connection. Repeats ``--repeat`` times (a fresh run each time) and
prints the median. Then, over HTTP on the same server: the latency of a 1000-bucket chart of
one series (full range and a 1% zoom), and the bytes the database grew by per point stored
(PostgreSQL: after ``VACUUM ANALYZE``, which autovacuum would soon do).

``--servers 2``: two servers on one database, a client process posting to each at once (half
the points each); the rate is all points over the wall time of both.

    python scripts/bench_server.py                    # SQLite, 1,000,000 points, 5 repetitions
    python scripts/bench_server.py --store postgresql --servers 2
    python scripts/bench_server.py --store all        # SQLite; PostgreSQL with 1 and 2 servers
    python scripts/bench_server.py --compare-insert   # PostgreSQL: COPY vs executemany vs
                                                      # one INSERT a row, store work only
    python scripts/bench_server.py --reads-under-ingest 8   # GET /api/runs latency while 8
                                                            # clients ingest
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

# The throwaway PostgreSQL cluster of the tests (tests/pgcluster.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_bodies(run: str, points: int, per_request: int, metrics: int) -> list[bytes]:
    bodies = []
    step_of = [0] * metrics
    base_ns = time.time_ns()
    for start in range(0, points, per_request):
        count = min(per_request, points - start)
        series: dict[int, list[dict[str, object]]] = {}
        for i in range(start, start + count):
            m = i % metrics
            ns = base_ns + i * 1000
            series.setdefault(m, []).append(
                {
                    "step": str(step_of[m]),
                    "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9))
                    + f".{ns % 10**9:09d}Z",
                    "floatValue": i * 0.5,
                }
            )
            step_of[m] += 1
        body = {
            "sessionId": "42",
            "runUpdates": [
                {
                    "workspace": "bench",
                    "project": "server",
                    "runName": run,
                    "series": [
                        {
                            "metricName": f"metric_{m}",
                            "scale": "ML_STEP",
                            "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
                            "points": pts,
                        }
                        for m, pts in series.items()
                    ],
                }
            ],
        }
        bodies.append(json.dumps(body).encode())
    return bodies


def start_server(db: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", db],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    raise RuntimeError("server did not start")


def _client(url: str, run: str, points: int, args: Any, ready: Any, go: Any, out: Any) -> None:
    """One client process: build its bodies, wait for the start, post them; report times."""
    bodies = build_bodies(run, points, args.per_request, args.metrics)
    headers = {"Content-Type": "application/json"}
    if args.gzip:
        bodies = [gzip.compress(b, compresslevel=1) for b in bodies]
        headers["Content-Encoding"] = "gzip"
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/runs", json={"run": {"workspace": "bench", "project": "server",
                                              "runName": run},
                                      "createProjectIfMissing": True}).raise_for_status()
        ready.put(run)
        go.wait()
        t0 = time.monotonic()
        for body in bodies:
            client.post("/v1/runs:update", content=body, headers=headers).raise_for_status()
        t1 = time.monotonic()
        stored = sum(s["point_count"] for s in
                     client.get(f"/api/runs/bench/server/{run}").json()["series"])
    out.put((t0, t1, stored))


def run_once(urls: list[str], tag: str, args: argparse.Namespace) -> tuple[float, int]:
    """All points, split over one client process per server; (seconds, points stored)."""
    context = multiprocessing.get_context("spawn")
    ready, out, go = context.Queue(), context.Queue(), context.Event()
    share = args.points // len(urls)
    clients = [context.Process(target=_client, args=(url, f"{tag}-{i}", share, args, ready, go,
                                                     out)) for i, url in enumerate(urls)]
    for c in clients:
        c.start()
    for _ in clients:
        ready.get(timeout=300)
    go.set()
    results = [out.get(timeout=600) for _ in clients]
    for c in clients:
        c.join()
    return max(r[1] for r in results) - min(r[0] for r in results), sum(r[2] for r in results)


def database_bytes(target: str) -> int:
    """The database's size on disk: a SQLite file with its WAL (after a checkpoint), or
    ``pg_database_size`` after ``VACUUM ANALYZE`` (dead row versions become free space)."""
    if not target.startswith("postgresql://"):
        import sqlite3

        with sqlite3.connect(target) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        path = Path(target)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    import psycopg

    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])


def chart_latency(url: str, run: str, repeat: int = 21) -> tuple[float, float]:
    """Median ms of GET .../buckets?n=1000 over one series: full range, and a 1% zoom."""
    with httpx.Client(base_url=url, timeout=60) as client:
        series = client.get(f"/api/runs/bench/server/{run}").json()["series"][0]
        path = f"/api/runs/bench/server/{run}/series/{series['id']}/buckets"
        lo, hi = series["first_step"], series["last_step"]
        zoom = {"n": 1000, "start": (lo + hi) // 2, "end": (lo + hi) // 2 + (hi - lo) // 100}
        out = []
        for params in ({"n": 1000}, zoom):
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                client.get(path, params=params).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            out.append(statistics.median(times))
    return out[0], out[1]


@contextlib.contextmanager
def databases(store: str, db: str | None) -> Iterator[Any]:
    """Yields a function making a fresh database (a target for --db) each time it is called."""
    if db is not None:
        yield lambda: db
        return
    if store == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            count = iter(range(10**6))
            yield lambda: os.path.join(tmp, f"bench-{next(count)}.sqlite3")
        return
    from tests.pgcluster import throwaway_cluster

    with throwaway_cluster(durable=True) as cluster:
        yield lambda: cluster.url(cluster.create_database())


def bench(store: str, servers: int, args: argparse.Namespace) -> int:
    with databases(store, args.db) as new_database:
        target = new_database()
        procs, urls = [], []
        try:
            for _ in range(servers):
                proc, url = start_server(target)
                procs.append(proc)
                urls.append(url)
            empty = database_bytes(target)
            rates, stored_total = [], 0
            print(f"\n{store}, {servers} server(s), {len(urls)} client(s); "
                  f"{time.strftime('%Y-%m-%d %H:%M')}")
            print(f"{'rep':>4} {'points':>10} {'stored':>10} {'seconds':>8} {'points/s':>12}")
            tag = ""
            for rep in range(args.repeat):
                tag = f"run-{rep}-{time.time_ns()}"
                elapsed, stored = run_once(urls, tag, args)
                stored_total += stored
                rate = args.points / elapsed
                rates.append(rate)
                print(f"{rep:>4} {args.points:>10,} {stored:>10,} {elapsed:>8.2f} {rate:>12,.0f}")
                if stored != args.points // servers * servers:
                    print(f"ERROR: servers stored {stored} of {args.points} points")
                    return 1
            full_ms, zoom_ms = chart_latency(urls[0], f"{tag}-0")
            per_point = (database_bytes(target) - empty) / stored_total
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)
    print(f"median {statistics.median(rates):,.0f} points/s over {args.repeat} runs "
          f"({'gzip' if args.gzip else 'identity'} bodies of {args.per_request:,} points, "
          f"{args.metrics} series)")
    print(f"chart of one series ({args.points // servers // args.metrics:,} points, n=1000, "
          f"over HTTP): full range {full_ms:.1f} ms, 1% zoom {zoom_ms:.1f} ms (medians of 21)")
    print(f"database growth: {per_point:.1f} bytes per stored point ({stored_total:,} points"
          f"{', after VACUUM ANALYZE' if store == 'postgresql' else ''})")
    return 0


def compare_insert(args: argparse.Namespace) -> int:
    """The store's work alone (requests parsed beforehand, as the app hands them over), on
    PostgreSQL, for each way of inserting a request's chunk rows; interleaved repetitions."""
    from metrana.server.app import _parse, _parse_update
    from metrana.server.store import Store
    from metrana.server.store.database import INSERT_METHODS
    from metrana.server.store.write import CHUNK_COLUMNS

    bodies = build_bodies("r", args.points, args.per_request, args.metrics)
    times: dict[str, list[float]] = {m: [] for m in INSERT_METHODS}
    with databases("postgresql", args.db) as new_database:
        for _ in range(args.repeat):
            for method in INSERT_METHODS:
                store = Store(new_database(), insert_method=method)
                run = f"r-{time.time_ns()}"
                store.create_run({"run": {"workspace": "bench", "project": "server",
                                          "run_name": run}, "create_project_if_missing": True})
                requests = [_parse(_parse_update, b.replace(b'"runName": "r"',
                                                            f'"runName": "{run}"'.encode()), "")
                            for b in bodies]
                t0 = time.perf_counter()
                for request in requests:
                    store.update_runs(request)
                times[method].append(time.perf_counter() - t0)
                store.close()
        # The insert alone: one request's chunk rows (real ones, read back), inserted with each
        # method in turn, many times, in a transaction of its own (commit not timed).
        store = Store(new_database())
        store.create_run({"run": {"workspace": "bench", "project": "server", "run_name": "r"},
                          "create_project_if_missing": True})
        store.update_runs(_parse(_parse_update, bodies[0], ""))
        names = ", ".join(name for name, _ in CHUNK_COLUMNS)
        with store.db.read() as tx:
            rows = tx.all(f"SELECT {names} FROM chunks ORDER BY id")
        alone: dict[str, list[float]] = {m: [] for m in INSERT_METHODS}
        for _ in range(300):
            for method in INSERT_METHODS:
                store.db.insert_method = method  # type: ignore[attr-defined]
                with store.db.write() as tx:
                    t0 = time.perf_counter()
                    tx.insert_ids("chunks", CHUNK_COLUMNS, rows)
                    alone[method].append(time.perf_counter() - t0)
        store.close()
    print(f"\nPostgreSQL, {args.points:,} points in {len(bodies)} requests of "
          f"{args.per_request:,} ({args.metrics} series: {args.metrics} chunk rows a request)")
    print(f"{'method':>12} {'store work (median of ' + str(args.repeat) + ')':>34} "
          f"{'insert alone (median of 300)':>30}")
    for method, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{method:>12} {args.points / median:>14,.0f} points/s "
              f"{median / len(bodies) * 1000:>6.2f} ms/request "
              f"{statistics.median(alone[method]) * 1e6:>18,.0f} µs/request")
    return 0


def _ingest_forever(url: str, run: str, seconds: float) -> None:
    """One client process: post 10,000-point requests back to back for ``seconds``."""
    with httpx.Client(base_url=url, timeout=120) as client:
        client.post("/v1/runs", json={"run": {"workspace": "bench", "project": "server",
                                              "runName": run}, "createProjectIfMissing": True})
        bodies = build_bodies(run, 200_000, 10_000, 16)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for body in bodies:
                client.post("/v1/runs:update", content=body,
                            headers={"Content-Type": "application/json"}).raise_for_status()
                if time.monotonic() >= end:
                    return


def reads_under_ingest(url: str, clients: int, seconds: float) -> list[float]:
    """GET /api/runs every 20 ms while ``clients`` processes ingest; latencies in ms."""
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_ingest_forever, args=(url, f"load-{i}-{time.time_ns()}",
                                                             seconds)) for i in range(clients)]
    for writer in writers:
        writer.start()
    latencies: list[float] = []
    with httpx.Client(base_url=url, timeout=60) as client:
        time.sleep(2)  # let every client start ingesting
        end = time.monotonic() + seconds - 4
        while time.monotonic() < end:
            t0 = time.perf_counter()
            client.get("/api/runs").raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
            time.sleep(0.02)
    for writer in writers:
        writer.join()
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gzip", action="store_true", help="send gzip-compressed bodies")
    parser.add_argument("--url", default=None, help="an already running server")
    parser.add_argument("--store", choices=("sqlite", "postgresql", "all"), default="sqlite")
    parser.add_argument("--db", default=None,
                        help="the database the servers use (default: a fresh one per --store)")
    parser.add_argument("--servers", type=int, default=1, help="servers on one database")
    parser.add_argument("--compare-insert", action="store_true",
                        help="PostgreSQL: COPY vs executemany vs one INSERT a row")
    parser.add_argument("--reads-under-ingest", type=int, default=0, metavar="CLIENTS",
                        help="measure GET /api/runs latency while CLIENTS processes ingest")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.compare_insert:
        return compare_insert(args)
    if args.reads_under_ingest:
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_server(args.db or os.path.join(tmp, "bench.sqlite3"))
            try:
                ms = sorted(reads_under_ingest(url, args.reads_under_ingest, args.seconds))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        p = {q: ms[min(len(ms) - 1, int(q / 100 * len(ms)))] for q in (50, 90, 99)}
        print(f"GET /api/runs while {args.reads_under_ingest} clients ingest: {len(ms)} reads, "
              f"p50 {p[50]:.1f} ms, p90 {p[90]:.1f} ms, p99 {p[99]:.1f} ms, max {ms[-1]:.1f} ms")
        return 0
    if args.url is not None:
        rates = []
        for rep in range(args.repeat):
            elapsed, stored = run_once([args.url], f"run-{rep}-{time.time_ns()}", args)
            rates.append(args.points / elapsed)
            print(f"{rep:>4} {args.points:>10,} {stored:>10,} {elapsed:>8.2f} {rates[-1]:>12,.0f}")
        print(f"median {statistics.median(rates):,.0f} points/s over {args.repeat} runs")
        return 0
    if args.store == "all":
        plan = [("sqlite", 1), ("postgresql", 1), ("postgresql", 2)]
    else:
        plan = [(args.store, args.servers)]
    return max(bench(store, servers, args) for store, servers in plan)


if __name__ == "__main__":
    sys.exit(main())

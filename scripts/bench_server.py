"""Ingest speed of ``metrana serve``: POST N points in 10,000-point requests, print points/s.

Starts a real server (its own process, real SQLite file in a temp dir) unless ``--url`` is
given, builds the request bodies up front so the client's cost is not measured, then posts them
one after another over one keep-alive connection. Repeats ``--repeat`` times (a fresh run each
time) and prints the median.

    python scripts/bench_server.py                 # 1,000,000 points, 5 repetitions
    python scripts/bench_server.py --points 200000 --repeat 3 --gzip
    python scripts/bench_server.py --reads-under-ingest 8   # GET /api/runs latency while 8
                                                            # clients ingest
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import httpx


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


def run_once(url: str, run: str, args: argparse.Namespace) -> tuple[float, int]:
    bodies = build_bodies(run, args.points, args.per_request, args.metrics)
    headers = {"Content-Type": "application/json"}
    if args.gzip:
        bodies = [gzip.compress(b, compresslevel=1) for b in bodies]
        headers["Content-Encoding"] = "gzip"
    with httpx.Client(base_url=url, timeout=120) as client:
        r = client.post(
            "/v1/runs",
            json={"run": {"workspace": "bench", "project": "server", "runName": run},
                  "createProjectIfMissing": True},
        )
        r.raise_for_status()
        t0 = time.perf_counter()
        for body in bodies:
            r = client.post("/v1/runs:update", content=body, headers=headers)
            r.raise_for_status()
        elapsed = time.perf_counter() - t0
        stored = sum(
            s["point_count"] for s in client.get(f"/api/runs/bench/server/{run}").json()["series"]
        )
    return elapsed, stored


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
    import multiprocessing

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
    parser.add_argument("--reads-under-ingest", type=int, default=0, metavar="CLIENTS",
                        help="measure GET /api/runs latency while CLIENTS processes ingest")
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    if args.reads_under_ingest:
        with tempfile.TemporaryDirectory() as tmp:
            server, url = start_server(os.path.join(tmp, "bench.sqlite3"))
            try:
                ms = sorted(reads_under_ingest(url, args.reads_under_ingest, args.seconds))
            finally:
                server.terminate()
                server.wait(timeout=30)
        p = {q: ms[min(len(ms) - 1, int(q / 100 * len(ms)))] for q in (50, 90, 99)}
        print(f"GET /api/runs while {args.reads_under_ingest} clients ingest: {len(ms)} reads, "
              f"p50 {p[50]:.1f} ms, p90 {p[90]:.1f} ms, p99 {p[99]:.1f} ms, max {ms[-1]:.1f} ms")
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        proc: subprocess.Popen[str] | None = None
        url = args.url
        if url is None:
            proc, url = start_server(os.path.join(tmp, "bench.sqlite3"))
        try:
            rates = []
            print(f"{'rep':>4} {'points':>10} {'stored':>10} {'seconds':>8} {'points/s':>12}")
            for rep in range(args.repeat):
                elapsed, stored = run_once(url, f"run-{rep}-{time.time_ns()}", args)
                rate = args.points / elapsed
                rates.append(rate)
                print(f"{rep:>4} {args.points:>10,} {stored:>10,} {elapsed:>8.2f} {rate:>12,.0f}")
                if stored != args.points:
                    print(f"ERROR: server stored {stored} of {args.points} points")
                    return 1
            print(f"median {statistics.median(rates):,.0f} points/s over {args.repeat} runs"
                  f" ({'gzip' if args.gzip else 'identity'} bodies of {args.per_request:,} points)")
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Ingest speed of ``metrana serve``: POST N points in 10,000-point requests, print points/s.

Starts a real server (its own process, real SQLite file in a temp dir) unless ``--url`` is
given, builds the request bodies up front so the client's cost is not measured, then posts them
one after another over one keep-alive connection. Repeats ``--repeat`` times (a fresh run each
time) and prints the median.

    python scripts/bench_server.py                 # 1,000,000 points, 5 repetitions
    python scripts/bench_server.py --points 200000 --repeat 3 --gzip
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--per-request", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--gzip", action="store_true", help="send gzip-compressed bodies")
    parser.add_argument("--url", default=None, help="an already running server")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        proc = None
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

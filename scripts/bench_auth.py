"""What authentication costs a request: the same small requests against ``metrana serve`` (its
own process, SQLite or ``--db postgresql://…``) sent with no key (an open server, the
baseline), the server's own key, a key of the database, and the dashboard's session cookie.

Each mode gets a fresh database and server, then ``--requests`` sequential round trips over one
keep-alive connection of each kind: a read (``GET /api/runs/W/P/R``, the run's detail) and a
write (``POST /v1/runs:update`` of one point). The first request with a database key pays
scrypt (~70 ms) once; the table shows it apart ("first"), and medians over the rest. Run it a
few times on a quiet machine and compare modes within one run: the machine's noise moves every
row together.

    python scripts/bench_auth.py [--requests 300] [--db postgresql://…] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from metrana.server.access import OWNER
from metrana.server.keys_admin import create_key
from metrana.server.store import Store

SERVER_KEY = "bench-server-key-" + "x" * 32


def start(db: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", db],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **env})
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            return proc, match.group(1)
    raise SystemExit("metrana serve did not start")


def fresh_pg(url: str, n: int) -> str:
    """A new database on the PostgreSQL server of ``url`` for each mode."""
    import psycopg

    name = f"bench_auth_{os.getpid()}_{n}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def measure(mode: str, db: str, requests: int) -> tuple[float, float, float]:
    """(first request ms, median read ms, median write ms) for one way of authenticating."""
    headers: dict[str, str] = {}
    env: dict[str, str] = {}
    if mode == "server key":
        env["METRANA_SERVER_API_KEY"] = SERVER_KEY
        headers["Authorization"] = f"Bearer {SERVER_KEY}"
    key = None
    if mode in ("database key", "session cookie"):
        store = Store(db)
        try:
            key, _ = create_key(store, OWNER, workspaces=["bench"], role="write")
        finally:
            store.close()
        if mode == "database key":
            headers["Authorization"] = f"Bearer {key}"
    proc, url = start(db, env)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            if mode == "session cookie":
                http.post("/api/session", json={"key": key}).raise_for_status()
                http.headers["X-Metrana-CSRF"] = http.get("/api/session").json()["csrf"]
            began = time.perf_counter()
            http.post("/v1/runs", json={"run": {"workspace": "bench", "project": "auth",
                                                "runName": "r"},
                                        "createProjectIfMissing": True}).raise_for_status()
            first = (time.perf_counter() - began) * 1e3
            reads: list[float] = []
            writes: list[float] = []
            for i in range(requests):
                began = time.perf_counter()
                http.get("/api/runs/bench/auth/r").raise_for_status()
                reads.append((time.perf_counter() - began) * 1e3)
                began = time.perf_counter()
                http.post("/v1/runs:update", json={"sessionId": "1", "runUpdates": [{
                    "workspace": "bench", "project": "auth", "runName": "r",
                    "series": [{"metricName": "loss", "scale": "ML_STEP", "points": [
                        {"step": str(i), "floatValue": 1.0}]}]}]}).raise_for_status()
                writes.append((time.perf_counter() - began) * 1e3)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    return first, statistics.median(reads), statistics.median(writes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3, help="medians of this many servers")
    parser.add_argument("--db", default=None, help="a postgresql:// URL (default: SQLite)")
    args = parser.parse_args()
    modes = ("no key (open)", "server key", "database key", "session cookie")
    results: dict[str, list[tuple[float, float, float]]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        n = 0
        for _ in range(args.rounds):
            for mode in modes:  # interleaved: the machine's noise spreads over every mode
                n += 1
                db = fresh_pg(args.db, n) if args.db else str(Path(tmp) / f"{n}.sqlite3")
                results[mode].append(measure(mode, db, args.requests))
    store = "PostgreSQL" if args.db else "SQLite"
    print(f"{store}; {args.requests} reads and writes per server, medians of {args.rounds} "
          f"servers; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'authentication':<16}{'first request':>15}{'read':>10}{'write':>10}")
    for mode in modes:
        first, read, write = (statistics.median(r[i] for r in results[mode]) for i in range(3))
        print(f"{mode:<16}{first:>12.1f} ms{read:>7.2f} ms{write:>7.2f} ms")


if __name__ == "__main__":
    main()

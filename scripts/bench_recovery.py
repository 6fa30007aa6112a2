"""Does recovery keep up? A backlog built during an outage, delivered while logging goes on.

A real ``metrana serve`` behind a proxy that answers every request after ``--latency`` seconds
(80 ms: a distant service) and, for ``--outage`` seconds, with 503. The client logs ``--rate``
points per second throughout (paced, as a training loop would). Measured, per run:

- the backlog when the service came back (points logged but not yet delivered);
- catch-up: seconds from the service's return until the client has no spooled points and at
  most one second of logging pending (it then only sends what is new);
- whether every point was stored.

Run twice per repetition: with the default retry policy (a batch retries for up to ~1 minute
before the run switches to the spool) and with a short one (4 attempts: the outage is spooled
and replayed). Prints medians of ``--repeat`` runs.

    python scripts/bench_recovery.py [--outage 30] [--latency 0.08] [--rate 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))  # for tests.faults, the fault-injecting proxy

import httpx  # noqa: E402

import metrana  # noqa: E402
from metrana._transport import RetryPolicy  # noqa: E402
from tests.faults import running_proxy  # noqa: E402


def start_server(db: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", db],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if found := re.search(r"listening on (http://\S+)", line):
            return proc, found.group(1)
    raise RuntimeError("server did not start")


def one_run(url: str, args: argparse.Namespace, retry: RetryPolicy | None) -> dict[str, float]:
    name = f"recovery-{time.time_ns()}"
    with running_proxy(url) as proxy:
        proxy.delay = args.latency
        options = {"retry": retry} if retry is not None else {}
        run = metrana.session(workspace_name="bench", project_name="recovery", run_name=name,
                              ingestion_url=proxy.url, log_level="Error", close_timeout=600,
                              **options)
        stop = threading.Event()
        logged = [0]

        def loop() -> None:
            start = time.monotonic()
            while not stop.is_set():
                due = int((time.monotonic() - start) * args.rate)
                while logged[0] < due:
                    run.log(f"m{logged[0] % 8}", float(logged[0]))
                    logged[0] += 1
                time.sleep(0.005)

        thread = threading.Thread(target=loop)
        thread.start()
        time.sleep(args.before)
        proxy.fail_next(10**9, 503)
        time.sleep(args.outage)
        proxy.recover()
        back = time.monotonic()
        m = run.get_metrics()
        backlog = m.logged - m.sent
        caught_up = None
        while time.monotonic() - back < args.after:
            m = run.get_metrics()
            if m.spooled == 0 and m.pending <= args.rate and caught_up is None:
                caught_up = time.monotonic() - back
            time.sleep(0.05)
        stop.set()
        thread.join()
        final = run.close()
    stored = sum(s["point_count"] for s in httpx.get(
        f"{url}/api/runs/bench/recovery/{name}", timeout=60).json()["series"])
    return {"backlog": backlog, "catch_up": caught_up if caught_up is not None else float("inf"),
            "logged": final.logged, "stored": stored}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outage", type=float, default=30.0)
    parser.add_argument("--latency", type=float, default=0.08)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--before", type=float, default=5.0)
    parser.add_argument("--after", type=float, default=40.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["METRANA_SPOOL_DIR"] = str(Path(tmp) / "spool")
        proc, url = start_server(str(Path(tmp) / "recovery.sqlite3"))
        try:
            for label, retry in (("default retry policy", None),
                                 ("4 attempts, then spool", RetryPolicy(max_attempts=4))):
                results = [one_run(url, args, retry) for _ in range(args.repeat)]
                ok = all(r["stored"] == r["logged"] for r in results)
                rows.append((label, statistics.median(r["backlog"] for r in results),
                             statistics.median(r["catch_up"] for r in results),
                             max(r["catch_up"] for r in results), ok))
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    print(f"\n{args.outage:g} s outage, {args.latency * 1000:g} ms per request, logging "
          f"{args.rate:,} points/s; medians of {args.repeat}; {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'policy':<24} {'backlog (points)':>17} {'catch-up (s)':>13} {'worst (s)':>10} "
          f"{'all stored':>11}")
    for label, backlog, median_s, worst, ok in rows:
        print(f"{label:<24} {backlog:>17,.0f} {median_s:>13.1f} {worst:>10.1f} "
              f"{'yes' if ok else 'NO':>11}")
    return 0 if all(r[4] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

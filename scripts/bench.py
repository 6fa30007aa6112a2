"""The metrana benchmark: one table, medians of repeated runs, checked against the receivers.

Measures, each workload in a fresh process (``scripts/bench_workload.py``):

- ``log()`` cost per scalar call (µs): ``log``, ``log(dict of 8)``, ``log_rl_environment_step``;
- end-to-end throughput: N points over M metrics, from the first ``log()`` to
  ``close(CompleteAll)`` returning, into a counting sink (``scripts/counting_sink.py``) and
  into ``metrana serve`` with SQLite — with the count each receiver stored (must equal N);
- vectorized RL logging: N env-step points as [64 envs x 1000] blocks (client-side rate);
- peak RSS of the client, and whether it grows with N at a fixed event queue of 100,000;
- the cost of system metrics: ``log()`` amortized with them off and on (sampled every 0.5 s,
  30x the default rate), interleaved in the same run, and one reading's own time (it runs in
  the engine's worker thread, never the caller's);
- ``--compare-seed``: the same cost and end-to-end workloads through the seed client
  (``metrana==0.2.1``, ``metrana-protobuf==0.6.1``, installed into a throwaway virtualenv),
  in the same run, with the ratios.

    python scripts/bench.py [--points 1000000] [--repeat 5] [--compare-seed] [--only system]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).parent
WORKLOAD = HERE / "bench_workload.py"


def start(cmd: list[str], env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    for line in proc.stdout:
        found = re.search(r"listening on (http://\S+)", line)
        if found:
            return proc, found.group(1)
    raise RuntimeError(f"{cmd} did not start")


def workload(python: str, env: dict[str, str], *args: object) -> dict[str, Any]:
    done = subprocess.run([python, str(WORKLOAD), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"workload {args} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def sink_count(url: str, run: str) -> int:
    return int(httpx.get(f"{url}/count", timeout=30).json().get(run, 0))


def served_count(url: str, run: str) -> int:
    """The run's points the benchmark logged: its ``system/`` series are left out (a run
    that lasts over a second gets one sample of each, which once read as 300,005 stored for
    300,000 sent)."""
    response = httpx.get(f"{url}/api/runs/bench/bench/{run}", timeout=120)
    if response.status_code == 404:
        return 0
    return sum(s["point_count"] for s in response.json()["series"]
               if not s["metric_name"].startswith("system/"))


def seed_python(tmp: Path) -> str | None:
    venv = tmp / "seed-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    done = subprocess.run([python, "-m", "pip", "install", "-q", "metrana==0.2.1",
                           "metrana-protobuf==0.6.1"], capture_output=True, text=True)
    if done.returncode != 0:
        print(f"(seed client not installable here: {done.stderr.strip()[-300:]})")
        return None
    return python


def median(rows: list[dict[str, Any]], field: str) -> float:
    return statistics.median(float(r[field]) for r in rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--metrics", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000, help="calls per cost measurement")
    parser.add_argument("--compare-seed", action="store_true")
    parser.add_argument("--seed-points", type=int, default=20_000,
                        help="end-to-end points for the seed client (it is slow)")
    parser.add_argument("--only", choices=("system",), default=None,
                        help="only the system metrics' rows")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, "METRANA_SPOOL_DIR": str(tmp / "spool"),
               "METRANA_CLOSE_TIMEOUT": "600", "METRANA_LOG_LEVEL": "Error"}
        sink, sink_url = start([sys.executable, str(HERE / "counting_sink.py")])
        serve, serve_url = start([sys.executable, "-m", "metrana", "serve", "--port", "0",
                                  "--db", str(tmp / "bench.sqlite3")])
        rows: list[tuple[str, str, str]] = []
        failures: list[str] = []
        try:
            def e2e(python: str, url: str, points: int, counter: Any, *extra: object
                    ) -> list[dict[str, Any]]:
                results = []
                for _ in range(args.repeat):
                    out = workload(python, env, "e2e", url, "--points", points,
                                   "--metrics", args.metrics, *extra)
                    out["stored"] = counter(url, out["run"])
                    if out["stored"] != points:
                        failures.append(f"{url}: stored {out['stored']:,} of {points:,}")
                    results.append(out)
                return results

            system_metrics_rows(env, serve_url, args.repeat, rows)
            if args.only == "system":
                return report(rows, failures, args.repeat)
            # The headline: log() as a training loop feels it, engine included (see
            # bench_workload.amortized), against metrana serve.
            amortized = [workload(sys.executable, env, "amortized", serve_url, "--rounds", 5,
                                  "--calls", 200_000, "--metrics", 4)
                         for _ in range(args.repeat)]
            rows.append(("log() amortized", f"{median(amortized, 'amortized'):.3f}",
                         "µs/call (5 x 200,000 calls over 4 metrics into metrana serve, "
                         "engine included)"))
            cost = [workload(sys.executable, env, "cost", sink_url, "--calls", args.calls)
                    for _ in range(args.repeat)]
            for case in ("log", "log_dict8", "log_rl_environment_step"):
                unit = "µs/call" if case != "log_dict8" else "µs/call (8 values)"
                rows.append((f"{case} burst median", f"{median(cost, case):.3f}",
                             unit + " (1,000-call bursts; leaves out the engine's share)"))
            to_sink = e2e(sys.executable, sink_url, args.points, sink_count)
            to_serve = e2e(sys.executable, serve_url, args.points, served_count)
            for label, results in (("e2e -> counting sink", to_sink),
                                   ("e2e -> metrana serve", to_serve)):
                stored = [r["stored"] for r in results]
                rows.append((label, f"{median(results, 'rate'):,.0f}",
                             f"points/s ({args.points:,} pts, {args.metrics} metrics; stored "
                             f"{min(stored):,}..{max(stored):,})"))
            for label, results in (("engine CPU, -> counting sink", to_sink),
                                   ("engine CPU, -> metrana serve", to_serve)):
                rows.append((label, f"{median(results, 'engine_cpu_us'):.2f}",
                             "µs/point (process CPU less the logging thread's)"))
            vector = [workload(sys.executable, env, "vector", sink_url, "--points", args.points)
                      for _ in range(args.repeat)]
            rows.append(("vectorized env-step, client", f"{median(vector, 'client_rate'):,.0f}",
                          "points/s ([64 x 1000] blocks)"))
            rows.append(("vectorized env-step, e2e", f"{median(vector, 'rate'):,.0f}",
                         "points/s (into the counting sink)"))
            small = max(args.points // 2, 10_000)  # both sizes overflow the 100,000 queue
            rss = {}
            for n in (small, args.points):
                out = workload(sys.executable, env, "e2e", sink_url, "--points", n,
                               "--metrics", args.metrics, "--queue", 100_000)
                rss[n] = out["peak_rss_mb"]
            grows = rss[args.points] > 1.2 * rss[small]
            rows.append(("peak RSS, queue 100,000", f"{rss[small]:.0f} -> {rss[args.points]:.0f}",
                         f"MB at {small:,} -> {args.points:,} points "
                         f"({'GROWS' if grows else 'does not grow'} with N)"))
            rows.append(("peak RSS, unbounded queue", f"{median(to_sink, 'peak_rss_mb'):.0f}",
                         f"MB at {args.points:,} points"))

            if args.compare_seed:
                python = seed_python(tmp)
                if python is not None:
                    seed_amortized = [workload(python, env, "amortized", serve_url,
                                               "--rounds", 5, "--calls", 40_000,
                                               "--metrics", 4) for _ in range(args.repeat)]
                    ours = median(amortized, "amortized")
                    seed = median(seed_amortized, "amortized")
                    rows.append(("seed log() amortized", f"{seed:.3f}",
                                 f"µs/call (5 x 40,000 calls; ours is {seed / ours:.1f}x "
                                 "cheaper)"))
                    seed_cost = [workload(python, env, "cost", sink_url, "--calls", 20_000)
                                 for _ in range(args.repeat)]
                    for case in ("log", "log_dict8", "log_rl_environment_step"):
                        ours, seed = median(cost, case), median(seed_cost, case)
                        rows.append((f"seed {case} burst median", f"{seed:.3f}",
                                     f"µs/call  (ours is {seed / ours:.1f}x cheaper)"))
                    seed_sink = []
                    for _ in range(args.repeat):
                        out = workload(python, env, "e2e", sink_url, "--points",
                                       args.seed_points, "--metrics", args.metrics)
                        out["stored"] = sink_count(sink_url, out["run"])
                        seed_sink.append(out)
                    # The seed loses points: rate what it delivered, not what it was given.
                    seed_rate = statistics.median(r["stored"] / r["total_seconds"]
                                                  for r in seed_sink)
                    rows.append(("seed e2e -> counting sink", f"{seed_rate:,.0f}",
                                 f"points/s delivered ({args.seed_points:,} pts; stored "
                                 f"{min(r['stored'] for r in seed_sink):,}.."
                                 f"{max(r['stored'] for r in seed_sink):,}; ours is "
                                 f"{median(to_sink, 'rate') / seed_rate:.0f}x faster)"))
        finally:
            for proc in (sink, serve):
                proc.terminate()
                proc.communicate(timeout=30)
    return report(rows, failures, args.repeat)


def system_metrics_rows(env: dict[str, str], url: str, repeat: int,
                        rows: list[tuple[str, str, str]]) -> None:
    """log() amortized without and with system metrics, the two interleaved (a noisy
    machine drifts: pairs compare like with like), and one reading's time."""
    off: list[dict[str, Any]] = []
    on: list[dict[str, Any]] = []
    for _ in range(repeat):
        for results, interval in ((off, "0"), (on, "0.5")):
            results.append(workload(sys.executable, {**env, "METRANA_SYSTEM_METRICS_INTERVAL":
                                                     interval}, "amortized", url, "--rounds",
                                    10, "--calls", 1_000_000, "--metrics", 4))
    rows.append(("log() mean, no system metrics", f"{median(off, 'mean'):.3f}",
                 "µs/call (10 x 1,000,000 calls, every round counted; "
                 "METRANA_SYSTEM_METRICS_INTERVAL=0)"))
    rows.append(("log() mean, system metrics", f"{median(on, 'mean'):.3f}",
                 "µs/call (the same, sampled every 0.5 s: 30x the default rate; "
                 "interleaved with the above)"))
    sys.path.insert(0, str(HERE.parent))
    from metrana._system_metrics import Sampler

    sampler = Sampler()
    times = []
    for _ in range(200):
        start = time.perf_counter()
        sampler.sample()
        times.append(time.perf_counter() - start)
    sampler.close()
    rows.append(("system metrics, one reading", f"{statistics.median(times) * 1e6:.0f}",
                 "µs (median of 200; in the engine's worker thread, never the caller's)"))


def report(rows: list[tuple[str, str, str]], failures: list[str], repeat: int) -> int:
    width = max(len(r[0]) for r in rows)
    value_width = max(len(r[1]) for r in rows)
    print(f"\nmedians of {repeat} runs; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{os.cpu_count()} cores")
    for name, value, unit in rows:
        print(f"{name:<{width}}  {value:>{value_width}}  {unit}")
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

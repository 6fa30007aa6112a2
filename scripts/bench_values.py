"""Histograms and point clouds: the four numbers of issue #23, each with a baseline measured in
the same run (the machine is shared and noisy: compare within a run, not across runs).

- ``Histogram.from_values`` over 1M float32 values (64 bins); baseline: ``np.histogram`` alone;
- ``log_histogram`` in the loop, binning excluded (a prebuilt 64-bin Histogram; goal <= 5 µs a
  call); baseline: ``log(name, float)`` in the same session;
- stored bytes per 64-bin histogram (goal <= 300) on SQLite: the database file's growth over
  10,000 histograms of 100,000 values each, after VACUUM; baseline: 64 scalar points;
- the dashboard's distribution chart of 10,000 steps (64 and 512 bins) ready, in Chromium
  (cold loads, from navigation start; goal <= 1 s); baseline: a 10,000-point scalar series.

    python scripts/bench_values.py [--repeat 5] [--calls 20000] [--loads 5]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import metrana
from metrana.server.store import Store

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def binning(repeat: int) -> tuple[float, float]:
    values = np.random.default_rng(0).normal(size=1_000_000).astype(np.float32)
    ours = timed(lambda: metrana.Histogram.from_values(values, bins=64), repeat)
    numpy = timed(lambda: np.histogram(values, bins=64), repeat)
    return statistics.median(ours) * 1e3, statistics.median(numpy) * 1e3


def call_cost(calls: int, repeat: int, spool: Path) -> tuple[float, float]:
    histogram = metrana.Histogram.from_values(np.random.default_rng(1).normal(size=10_000))
    per_hist, per_scalar = [], []
    for r in range(repeat):
        with metrana.session(workspace_name="bench", project_name="values", run_name=f"c{r}",
                             mode="offline", spool_dir=str(spool / str(r)),
                             log_level="ERROR") as session:
            log_histogram, log = session.log_histogram, session.log
            t0 = time.perf_counter()
            for _ in range(calls):
                log_histogram("weights", histogram)
            per_hist.append((time.perf_counter() - t0) / calls)
            t0 = time.perf_counter()
            for _ in range(calls):
                log("loss", 0.5)
            per_scalar.append((time.perf_counter() - t0) / calls)
    return statistics.median(per_hist) * 1e6, statistics.median(per_scalar) * 1e6


def _create(store: Store, run: str) -> None:
    store.create_run({"run": {"workspace": "bench", "project": "values", "run_name": run},
                      "create_project_if_missing": True})


def _size(db: Path) -> int:
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("VACUUM")
    return db.stat().st_size


def stored_bytes(tmp: Path, count: int = 10_000) -> tuple[float, float]:
    rng = np.random.default_rng(2)
    db = tmp / "bytes.sqlite3"
    store = Store(db)
    _create(store, "h")
    _create(store, "s")
    store.close()
    empty = _size(db)
    store = Store(db)
    t0 = time.time_ns() // 1_000_000
    edges = np.linspace(-5, 5, 65)
    for start in range(0, count, 1000):
        points = []
        for step in range(start, start + 1000):
            values = rng.normal(step / count, 1, 100_000)
            h = metrana.Histogram.from_values(values, bins=64, range=(-5, 5))
            assert h.counts is not None and h.stats is not None
            points.append({"step": step, "timestamp_millis": t0 + step,
                           "bin_edges": edges.tolist(), "counts": h.counts.tolist(),
                           "stats": dict(zip(("min", "max", "sum", "sum_of_squares"), h.stats,
                                             strict=True))})
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": "bench", "project": "values", "run_name": "h",
            "histogram_series": [{"metric_name": "weights", "scale": "ML_STEP",
                                  "points": points}]}]})
    store.close()
    with_histograms = _size(db)
    store = Store(db)
    for start in range(0, count * 64, 50_000):  # baseline: 64 scalar points per histogram
        steps = range(start, min(count * 64, start + 50_000))
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": "bench", "project": "values", "run_name": "s",
            "series": [{"metric_name": "bins", "scale": "ML_STEP", "ordering": 1,
                        "points": [{"step": s, "timestamp": t0 * 1_000_000 + s,
                                    "float_value": float(rng.integers(0, 5000))}
                                   for s in steps]}]}]})
    store.close()
    with_scalars = _size(db)
    return (with_histograms - empty) / count, (with_scalars - with_histograms) / count


def fill_page(db: Path, bins: int, steps: int = 10_000, *, scalar: bool = False) -> None:
    store = Store(db)
    _create(store, f"h{bins}")
    edges = np.linspace(-1.0, 1.0, bins + 1).tolist()
    t0 = time.time_ns() // 1_000_000 - steps
    centres = np.arange(bins)
    for start in range(0, steps, 1000):
        points = [{"step": s, "timestamp_millis": t0 + s, "bin_edges": edges,
                   "counts": np.rint(1000 * np.exp(-((centres - bins * s / steps) / 10) ** 2)
                                     ).astype(np.int64).tolist()}
                  for s in range(start, start + 1000)]
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": "bench", "project": "values", "run_name": f"h{bins}",
            "histogram_series": [{"metric_name": "weights", "scale": "ML_STEP",
                                  "points": points}]}]})
    if not scalar:
        store.close()
        return
    _create(store, "scalar")
    store.update_runs({"session_id": 1, "run_updates": [{
        "workspace": "bench", "project": "values", "run_name": "scalar",
        "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                    "points": [{"step": s, "timestamp": t0 * 1_000_000 + s,
                                "float_value": 1.0 / (s + 1)} for s in range(steps)]}]}]})
    store.close()


def page_ready(tmp: Path, loads: int, chromium: str) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    db = tmp / "page.sqlite3"
    for bins in (64, 512):
        fill_page(db, bins, scalar=bins == 64)
    server = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0", "--db",
                               str(db)], stdout=subprocess.PIPE, text=True)
    out: dict[str, float] = {}
    try:
        assert server.stdout is not None
        url = next(m.group(1) for line in server.stdout
                   if (m := re.search(r"listening on (http://\S+)", line)))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                                 args=LAUNCH_ARGS)
            for run, selector in (("scalar", '[data-metric="loss"][data-points="10000"]'),
                                  ("h64", '[data-kind="histogram"][data-steps="10000"]'),
                                  ("h512", '[data-kind="histogram"][data-steps="10000"]')):
                times = []
                for _ in range(loads):
                    context = browser.new_context(viewport={"width": 1300, "height": 900})
                    page = context.new_page()
                    page.goto(f"{url}/#/run/bench/values/{run}")
                    page.wait_for_selector("body[data-ready]")
                    page.wait_for_selector(selector)
                    times.append(page.evaluate("window.metranaReady.at"))
                    context.close()
                out[run] = statistics.median(times)
            browser.close()
    finally:
        server.terminate()
        server.communicate(timeout=30)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        ours, numpy = binning(args.repeat)
        hist_call, scalar_call = call_cost(args.calls, args.repeat, tmp / "spool")
        per_hist, per_scalars = stored_bytes(tmp)
        ready = page_ready(tmp, args.loads, args.chromium)
    print(f"\nhistograms and clouds; medians of {args.repeat} runs ({args.loads} page loads); "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'measure':<52} {'value':>12} {'baseline':>12}  baseline is")
    rows = [
        ("Histogram.from_values, 1M float32, 64 bins", f"{ours:.1f} ms", f"{numpy:.1f} ms",
         "np.histogram alone"),
        ("log_histogram call, prebuilt 64 bins (goal <= 5 µs)", f"{hist_call:.2f} µs",
         f"{scalar_call:.2f} µs", "log(name, float)"),
        ("stored bytes per 64-bin histogram (goal <= 300)", f"{per_hist:.0f} B",
         f"{per_scalars:.0f} B", "64 scalar points"),
        ("page ready, 64 bins x 10,000 steps (goal <= 1 s)", f"{ready['h64']:.0f} ms",
         f"{ready['scalar']:.0f} ms", "10,000-point scalar series"),
        ("page ready, 512 bins x 10,000 steps", f"{ready['h512']:.0f} ms",
         f"{ready['scalar']:.0f} ms", "10,000-point scalar series"),
    ]
    for label, value, base, what in rows:
        print(f"{label:<52} {value:>12} {base:>12}  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

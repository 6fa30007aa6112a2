"""Dashboard: how long a run page takes to be ready, by series size, in a real browser.

For each size one series is written into a fresh SQLite database (straight through the store:
ingest is measured elsewhere), ``metrana serve`` is started on it, and Chromium (Debian's, via
Playwright) loads the run's page ``--loads`` times, each in a fresh browser context (cold cache).
"Ready" is the page's own mark: every chart's buckets fetched and drawn, after the next frame,
measured from navigation start (so it includes loading the HTML, uPlot and the script). Zoom is
a drag across 5% of the plot until the finer buckets are drawn (it includes the page's 120 ms
debounce).

The last row is a run of many charts: ``--metrics`` series (default 100) of 10,000 points each.

    python scripts/bench_page.py [--sizes 10000,1000000] [--metrics 100] [--loads 7]
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
from pathlib import Path

import numpy as np

from metrana.server.store import Store

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def fill(db: Path, run: str, points: int, metrics: int = 1) -> None:
    """``metrics`` series of ``points`` points: ``loss``, then ``train/metric1``, ..."""
    store = Store(db)
    try:
        store.create_run({"run": {"workspace": "bench", "project": "page", "run_name": run},
                          "create_project_if_missing": True})
        rng = np.random.default_rng(0)
        base = time.time_ns() - points * 1_000_000
        for start in range(0, points, 50_000):
            steps = np.arange(start, min(points, start + 50_000))
            values = 2.0 * np.exp(-steps / points * 5) + rng.random(steps.size) * 0.05
            values[rng.random(steps.size) < 1e-5] = 50.0
            store.update_runs({"session_id": 1, "run_updates": [{
                "workspace": "bench", "project": "page", "run_name": run,
                "series": [{"metric_name": f"train/metric{m}" if m else "loss",
                            "scale": "ML_STEP", "ordering": 1,
                            "points": [{"step": s, "timestamp": base + s * 1_000_000,
                                        "float_value": v + m}
                                       for s, v in zip(steps.tolist(), values.tolist(),
                                                       strict=True)]}
                           for m in range(metrics)]}]})
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000")
    parser.add_argument("--metrics", type=int, default=100)
    parser.add_argument("--loads", type=int, default=7)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import Response, sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True,
                                             args=LAUNCH_ARGS)
        cases = [(int(s), 1) for s in args.sizes.split(",")]
        if args.metrics > 1:
            cases.append((10_000, args.metrics))
        for size, metrics in cases:
            db = Path(tmp) / f"page{size}x{metrics}.sqlite3"
            fill(db, "run", size, metrics)
            server = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0",
                                       "--db", str(db)], stdout=subprocess.PIPE, text=True)
            try:
                assert server.stdout is not None
                url = next(m.group(1) for line in server.stdout
                           if (m := re.search(r"listening on (http://\S+)", line)))
                ready: list[float] = []
                zoom: list[float] = []
                sizes: list[int] = []

                def record(response: Response, out: list[int] = sizes) -> None:
                    if "/buckets?" in response.url:
                        out.append(int(response.headers.get("content-length", 0)))

                for _ in range(args.loads):
                    context = browser.new_context(viewport={"width": 1300, "height": 900})
                    page = context.new_page()
                    page.on("response", record)
                    page.goto(f"{url}/#/run/bench/page/run")
                    page.wait_for_selector("body[data-ready]")
                    points = page.get_attribute('[data-metric="loss"]', "data-points")
                    assert points == str(size), (points, size)
                    assert page.evaluate("window.metranaReady.charts") == metrics
                    ready.append(page.evaluate("window.metranaReady.at"))
                    box = page.locator('[data-metric="loss"] .u-over').bounding_box()
                    assert box is not None
                    y = box["y"] + box["height"] / 2
                    page.mouse.move(box["x"] + box["width"] * 0.40, y)
                    page.mouse.down()
                    page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=3)
                    t0 = time.perf_counter()
                    page.mouse.up()
                    page.wait_for_function(
                        f"() => +document.querySelector('[data-metric=\"loss\"]')"
                        f".dataset.points < {size}")
                    zoom.append((time.perf_counter() - t0) * 1000)
                    context.close()
                rows.append((size, metrics, statistics.median(ready), min(ready), max(ready),
                             statistics.median(zoom), sizes[0]))
            finally:
                server.terminate()
                server.communicate(timeout=30)
        browser.close()
    print(f"\nrun page in Chromium (headless); medians of {args.loads} cold loads; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print(f"{'charts':>7} {'points each':>12} {'page ready':>11} {'(min–max)':>16} "
          f"{'zoom redraw':>12} {'first response':>15}")
    for size, metrics, med, lo, hi, zoom_ms, nbytes in rows:
        print(f"{metrics:>7} {size:>12,} {med:>8.0f} ms {f'{lo:.0f}–{hi:.0f} ms':>16} "
              f"{zoom_ms:>9.0f} ms {nbytes / 1024:>12.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

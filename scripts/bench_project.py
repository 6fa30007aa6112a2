"""Comparing runs: the project page, grouped charts and the compare page, timed in a real
browser (Debian's Chromium via Playwright) and the server's answers timed in process.

Cases (each database written straight through the store, then served by ``metrana serve``):

- **project page** of 1,000 and 10,000 runs (config lr × algo × seed, a 100-point ``loss``):
  ready = the page's own mark (table's first page, parallel coordinates over every run, the
  ungrouped chart of the first 20 runs, drawn and painted), from navigation start, cold cache;
- **grouped view**: 3 groups × 10 runs × 100,000 points, grouped by lr with a 95% CI band:
  the server's ``aggregate_runs`` answer (in process, the page's bucket count) and the page;
- **compare 20 runs** × 4 metrics × 1,000 points (the compare page ready);
- **baseline** in the same run: one run's page with 4 metrics × 1,000 points.

Goals (issue 22): project page ≤ 300 ms (1,000 runs) and ≤ 1 s (10,000); grouped view server
≤ 100 ms and page ≤ 600 ms; compare 20 runs ≤ 600 ms. Medians of ``--loads`` loads.

Each page is timed twice per load, interleaved: in Chromium driven over its DevTools pipe with
nothing attached (``devtools_pipe.py``: what a user's browser does; the goals are for these
rows), and under Playwright as the browser tests drive it (``… under Playwright``: it follows
every request and compiles its injected script on the page's main thread, 40-80 ms more on
this 2-core machine). Both launch Chromium with the same flags, a fresh context each load.

``--before TREE`` (a checkout of another commit, e.g. ``main``'s worktree) serves each database
from that tree's code as well, its page loads interleaved with this tree's (before, after,
before, ...): on a busy machine only numbers taken in the same moments compare.

    python scripts/bench_project.py [--loads 5] [--sizes 1000,10000] [--before ../main]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from devtools_pipe import PipeBrowser  # scripts/, on sys.path when run

from metrana.server.read_api import answer
from metrana.server.store import Store

LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
READY = ("() => { const p = document.getElementById('project');"
         " return p && p.dataset.done && p.dataset.done === p.dataset.generation; }")


def runs_project(db: Path, project: str, runs: int, points: int, metrics: int = 1,
                 lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)) -> None:
    """``runs`` runs of a sweep, ``metrics`` series of ``points`` points each, written in
    requests of up to 50 runs."""
    store = Store(db)
    rng = np.random.default_rng(0)
    base = time.time_ns() - 10**12
    try:
        pending: list[dict[str, Any]] = []
        for i in range(runs):
            name = f"run-{i:05d}"
            lr, algo, seed = lrs[i % len(lrs)], ("ppo", "dqn")[(i // len(lrs)) % 2], i // 10
            store.create_run({"run": {"workspace": "bench", "project": project,
                                      "run_name": name}, "create_project_if_missing": True})
            steps = np.arange(points)
            series = []
            for m in range(metrics):
                values = np.exp(-steps / points * 5 * lr * 1e3) + rng.normal(0, 0.05, points) + m
                series.append({"metric_name": "loss" if m == 0 else f"metric{m}",
                               "scale": "ML_STEP", "ordering": 1, "points": [
                                   {"step": int(s), "timestamp": base + int(s),
                                    "float_value": float(v)}
                                   for s, v in zip(steps, values, strict=True)]})
            pending.append({"workspace": "bench", "project": project, "run_name": name,
                            "attributes": [{"path": "config/lr", "float_value": lr},
                                           {"path": "config/algo", "string_value": algo},
                                           {"path": "config/seed", "int_value": seed}],
                            "series": series, "close_run": {}})
            if len(pending) >= max(1, 50_000 // max(points * metrics, 1)) or i == runs - 1:
                store.update_runs({"session_id": 1, "run_updates": pending})
                pending = []
    finally:
        store.close()


@contextmanager
def served(db: Path, tree: Path | None = None) -> Iterator[str]:
    """``metrana serve`` of ``db``; of the code in ``tree`` if given (else this one's).

    Run from the tree (``python -m`` puts the working directory first on ``sys.path``, before
    ``PYTHONPATH``: started from this repository, a ``--before`` tree's server ran this one's
    code, which made every before/after of this script until 2026-12-07 compare a tree with
    itself), and checked: the page it serves is the tree's."""
    root = (tree or Path(__file__).resolve().parent.parent).resolve()
    server = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0",
                               "--db", str(db)], stdout=subprocess.PIPE, text=True, cwd=root,
                              env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert server.stdout is not None
        url = next(m.group(1) for line in server.stdout
                   if (m := re.search(r"listening on (http://\S+)", line)))
        with urllib.request.urlopen(url + "/") as page:
            if page.read() != (root / "metrana/server/static/index.html").read_bytes():
                raise RuntimeError(f"the server started for {root} does not serve its page")
        yield url
    finally:
        server.terminate()
        server.wait()


def page_ready(browser: Any, pipe: PipeBrowser, urls: list[str], wait: str, mark: str,
               loads: int) -> list[tuple[list[float], list[float]]]:
    """ms from navigation start to the page's own ready mark, ``loads`` cold loads of each
    URL (the same page served by different trees), interleaved: per URL, (over the DevTools
    pipe, under Playwright)."""
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in urls]
    for _ in range(loads):
        for url, (bare, driven) in zip(urls, times, strict=True):
            bare.append(pipe.cold_load(url, wait, mark))
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            page = context.new_page()
            page.goto(url)
            page.wait_for_function(wait, timeout=60_000)
            driven.append(float(page.evaluate(f"window.{mark}.at")))
            context.close()
    return times


RUNS_READY = "() => document.querySelector('#runs') && document.body.dataset.ready === '1'"


def opened_in_app(browser: Any, urls: list[str], path: str, loads: int) -> list[list[float]]:
    """ms from following a link on the runs page (a hash change: the app's code is loaded,
    none of the project's data is) to the project page's own ready mark; a fresh browser
    context each load, interleaved across ``urls``."""
    times: list[list[float]] = [[] for _ in urls]
    for _ in range(loads):
        for url, got in zip(urls, times, strict=True):
            context = browser.new_context(viewport={"width": 1300, "height": 900})
            page = context.new_page()
            page.goto(url + "/#/")
            page.wait_for_function(RUNS_READY, timeout=60_000)
            start = float(page.evaluate(
                f"() => {{ window.metranaProjectReady = undefined; const t = performance.now();"
                f" location.hash = {path[1:]!r}; return t; }}"))
            page.wait_for_function(READY, timeout=60_000)
            page.wait_for_function("() => window.metranaProjectReady !== undefined")
            got.append(float(page.evaluate("window.metranaProjectReady.at")) - start)
            context.close()
    return times


def page_buckets(browser: Any, url: str) -> int:
    """The bucket count the grouped page asks for (its chart's ``data-n``) at the bench's
    viewport."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.goto(url)
    page.wait_for_function(READY, timeout=60_000)
    n = int(page.eval_on_selector("#project .chart[data-n]", "node => node.dataset.n"))
    context.close()
    return n


@contextmanager
def servers(db: Path, before: Path | None) -> Iterator[list[tuple[str, str]]]:
    """(label, URL) of ``db`` served by this tree and, if given, by the ``before`` tree."""
    with served(db) as url:
        if before is None:
            yield [("", url)]
            return
        with served(db, before) as old:
            yield [(" [before]", old), (" [after]", url)]


def pages(browser: Any, pipe: PipeBrowser, rows: list[tuple[str, str, list[float], str]],
          data: str, what: str, urls: list[tuple[str, str]], path: str, wait: str, mark: str,
          loads: int, goal: str) -> None:
    got = page_ready(browser, pipe, [url + path for _, url in urls], wait, mark, loads)
    for (label, _), (bare, _driven) in zip(urls, got, strict=True):
        rows.append((data, what + label, bare, goal))
    for (label, _), (_bare, driven) in zip(urls, got, strict=True):
        rows.append((data, f"{what} under Playwright{label}", driven, ""))


def in_process(db: Path, route: str, body: dict[str, Any], repeat: int) -> list[float]:
    store = Store(db)
    try:
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            answer(store, route, body)
            times.append((time.perf_counter() - t0) * 1000)
        return times
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--before", type=Path, default=None,
                        help="another checkout whose server's pages load interleaved with ours")
    parser.add_argument("--only", default="project,grouped,compare",
                        help="which cases: project, grouped, compare (comma-separated)")
    args = parser.parse_args()
    only = set(args.only.split(","))
    from playwright.sync_api import sync_playwright

    rows: list[tuple[str, str, list[float], str]] = []
    median: Callable[[list[float]], float] = statistics.median
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright, \
            PipeBrowser(args.chromium, LAUNCH_ARGS) as pipe:
        browser = playwright.chromium.launch(executable_path=args.chromium, headless=True,
                                             args=LAUNCH_ARGS)
        for size in (int(s) for s in args.sizes.split(",")) if "project" in only else ():
            db = Path(tmp) / f"runs{size}.sqlite3"
            t0 = time.perf_counter()
            runs_project(db, "sweep", size, 100)
            print(f"wrote {size:,} runs in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
            body: dict[str, Any] = {"workspace": "bench", "project": "sweep"}
            for route, extra in (
                    ("project", {}),
                    ("runs", {"limit": 100, "total": True, "attributes": [
                        "sys/name", "config/lr", "config/algo", "config/seed", "sys/created"],
                        "summaries": [{"series": {"metric": "loss"}, "fn": fn}
                                      for fn in ("last", "min", "max", "mean")]}),
                    ("runs", {"format": "columns", "limit": 20000, "attributes": [
                        "config/lr", "config/algo", "config/seed"],
                        "summaries": [{"series": {"metric": "loss"}, "fn": "last"}]}),
                    ("aggregate_runs", {"series": {"metric": "loss"}, "group_by": ["sys/name"],
                                        "max_runs": 20, "n": 300, "aggregations": ["avg"]})):
                label = route + (" (columns)" if extra.get("format") else "")
                rows.append((f"{size:,} runs", f"server: {label}",
                             in_process(db, route, {**body, **extra}, 7), ""))
            with servers(db, args.before) as urls:
                pages(browser, pipe, rows, f"{size:,} runs", "project page ready", urls,
                      "/#/project/bench/sweep", READY, "metranaProjectReady", args.loads,
                      "≤ 300 ms" if size <= 1000 else "≤ 1 s")
                in_app = opened_in_app(browser, [url for _, url in urls],
                                       "/#/project/bench/sweep", args.loads)
                for (label, _), times in zip(urls, in_app, strict=True):
                    rows.append((f"{size:,} runs", "project page opened from runs page" + label,
                                 times, ""))
        if "grouped" in only:  # 3 groups × 10 runs × 100,000 points
            db = Path(tmp) / "grouped.sqlite3"
            runs_project(db, "grouped", 30, 100_000, lrs=(1e-4, 1e-3, 1e-2))
            body = {"workspace": "bench", "project": "grouped", "series": {"metric": "loss"},
                    "group_by": ["config/lr"], "band": "ci95"}
            path = "/#/project/bench/grouped?group=config/lr&band=ci95"
            with servers(db, args.before) as urls:
                asked = page_buckets(browser, urls[-1][1] + path)
                # the page's own bucket count (its charts' width / 2), and the query's default
                for n in (asked, 1000):
                    rows.append(("3 × 10 runs × 100k points",
                                 f"server: aggregate_runs n={n}" + (" (page)" if n == asked else ""),
                                 in_process(db, "aggregate_runs", {**body, "n": n}, 7),
                                 "≤ 100 ms" if n == asked else ""))
                pages(browser, pipe, rows, "3 × 10 runs × 100k points", "grouped page ready", urls,
                      path, READY, "metranaProjectReady", args.loads, "≤ 600 ms")
        if "compare" in only:  # 20 runs × 4 metrics × 1,000 points; baseline: one run's page
            db = Path(tmp) / "compare.sqlite3"
            runs_project(db, "compare", 20, 1000, metrics=4)
            with servers(db, args.before) as urls:
                names = ",".join(f"bench/compare/run-{i:05d}" for i in range(20))
                wait = "() => document.body.dataset.ready && window.metranaReady"
                pages(browser, pipe, rows, "20 runs × 4 × 1,000 points", "compare page ready", urls,
                      f"/#/compare/{names}", wait, "metranaReady", args.loads, "≤ 600 ms")
                pages(browser, pipe, rows, "1 run × 4 × 1,000 points", "baseline: run page ready",
                      urls, "/#/run/bench/compare/run-00000", wait, "metranaReady", args.loads,
                      "")
        browser.close()
    print(f"\nload average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"\n{'data':<28} {'what':<38} {'median ms':>10} {'min':>8} {'max':>8}  goal")
    for data, what, times, goal in rows:
        print(f"{data:<28} {what:<38} {median(times):>10.1f} {min(times):>8.1f} "
              f"{max(times):>8.1f}  {goal}")
    print(json.dumps({f"{d} | {w}": round(median(t), 1) for d, w, t, _ in rows}),
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

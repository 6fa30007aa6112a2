"""What the dashboard tests read off a page, and a fast way to fill a database."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest
from playwright.sync_api import Page, Request

from metrana.server import ServerInfo, background_server
from metrana.server.store import Store

INSTALL = "apt-get update && apt-get install -y chromium"


def find_chromium() -> str | None:
    explicit = os.environ.get("DASHBOARD_CHROMIUM")
    if explicit:
        return explicit
    return shutil.which("chromium") or shutil.which("chromium-browser")


def ensure_chromium() -> str:
    """Chromium's path; installed first when missing and root, else the test run fails."""
    path = find_chromium()
    if path is None:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            subprocess.run(["bash", "-c", INSTALL], check=True, timeout=900,
                           env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                           stdout=subprocess.DEVNULL)
            path = find_chromium()
        if path is None:
            pytest.fail(f"the dashboard tests need Chromium: run `sudo sh -c '{INSTALL}'` "
                        "(or set DASHBOARD_CHROMIUM to a Chromium binary)")
    return path


@contextmanager
def server_for(page: Page, db: Path | str, **options: Any) -> Iterator[ServerInfo]:
    """``background_server`` for a test that opens its pages in ``page``: the page is left
    (``about:blank``) before the server stops, so that a live page's next poll never meets the
    closed port (Chromium logs that as a console error, ``net::ERR_CONNECTION_REFUSED``, which
    fails the test at teardown: it did, about once in 30 runs)."""
    with background_server(db, **options) as info:
        try:
            yield info
        finally:
            if not page.is_closed():
                page.goto("about:blank")


def run_hash(workspace: str, project: str, run: str) -> str:
    from urllib.parse import quote

    return "#/run/" + "/".join(quote(p, safe="") for p in (workspace, project, run))


def charts(page: Page) -> dict[str, str | None]:
    """data-metric -> data-points of every chart on the page."""
    result: dict[str, str | None] = page.eval_on_selector_all(
        "[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                         "e.dataset.points ?? null]))")
    return result


def store_series(db: Path | str, workspace: str, project: str, run: str, points: int,
                 metric: str = "loss") -> None:
    """Write one series of ``points`` points straight into a server's database (a 1M-point
    series through the client would take the test ~10 s of ingest; the page is what is
    tested). Values decay with noise and a few spikes."""
    store = Store(db)
    try:
        store.create_run({"run": {"workspace": workspace, "project": project, "run_name": run},
                          "create_project_if_missing": True})
        rng = np.random.default_rng(0)
        base = time.time_ns() - points * 1_000_000
        for start in range(0, points, 50_000):
            steps = np.arange(start, min(points, start + 50_000))
            values = 2.0 * np.exp(-steps / points * 5) + rng.random(steps.size) * 0.05
            values[rng.random(steps.size) < 1e-5] = 50.0
            store.update_runs({"session_id": 1, "run_updates": [{
                "workspace": workspace, "project": project, "run_name": run,
                "series": [{"metric_name": metric, "scale": "ML_STEP", "ordering": 1,
                            "points": [{"step": s, "timestamp": base + s * 1_000_000,
                                        "float_value": v}
                                       for s, v in zip(steps.tolist(), values.tolist(),
                                                       strict=True)]}]}]})
    finally:
        store.close()


def bucket_reads(requests: list[Request]) -> list[tuple[str, int | None, int | None]]:
    """Every bucket read in these requests as (what, start, end): what is ``series <id>``
    (several per batched request, ``POST /api/query/many_runs_buckets`` or
    ``GET .../buckets?series=``) or ``band <metric>``."""
    def number(text: str) -> int | None:
        return int(text) if text else None

    reads: list[tuple[str, int | None, int | None]] = []
    for request in requests:
        parts = urlsplit(request.url)
        query = parse_qs(parts.query)
        if parts.path == "/api/query/many_runs_buckets":
            body = request.post_data_json or {}
            reads.extend((f"series {spec['id']}", spec["start"], spec["end"])
                         for run in body["runs"] for spec in run["series"])
        elif parts.path.endswith("/buckets") and "series" in query:
            for spec in query["series"][0].split(","):
                series_id, start, end = (spec.split(":") + ["", ""])[:3]
                reads.append((f"series {series_id}", number(start), number(end)))
        elif parts.path.endswith("/bands"):
            reads.append((f"band {query['metric'][0]}", number(query.get("start", [""])[0]),
                          number(query.get("end", [""])[0])))
    return reads


def stray_text(page: Page) -> list[str]:
    """Text nodes of the page that are a JavaScript value printed by mistake: `null`,
    `undefined`, `NaN`, `[object Object]` (what ``replaceChildren(null)`` or a missing field
    in a template string writes). A user sees them as garbage under a title."""
    return list(page.evaluate("""() => {
      const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
      const found = [];
      for (let n = walker.nextNode(); n; n = walker.nextNode()) {
        const text = n.textContent.trim();
        if (["null", "undefined", "NaN", "[object Object]"].includes(text)) found.push(text);
      }
      return found;
    }"""))

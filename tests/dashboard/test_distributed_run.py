"""A run written by several processes of a job, in the browser: the log_distributed metric
as one merged curve (mean across writers, min–max shaded), each writer on demand, and the
list of writers (how many, which hosts, when each was last heard from)."""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator

import numpy as np
from playwright.sync_api import Locator, Page, Request, expect

import metrana
from metrana.server import ServerInfo
from tests.dashboard.dashboard_helpers import run_hash, stray_text

WS, PROJECT = "dash", "dist"
WRITERS, STEPS = 4, 20


def values() -> np.ndarray:
    """What writer w logs at step s (writers x steps): a spread that differs per step."""
    w, s = np.meshgrid(np.arange(WRITERS), np.arange(STEPS), indexing="ij")
    return np.asarray((w * 10.0 + s) * (1 + (s % 3)), dtype=np.float64)


def log_job(url: str, run: str, scale: float = 1.0) -> None:
    """Four writers of one job, one after the other (each its own writer session); writer w
    logs ``values()[w] * scale``."""
    table = values() * scale
    for writer in range(WRITERS):
        with metrana.session(workspace_name=WS, project_name=PROJECT, run_name=run,
                             ingestion_url=url, orchestration_id=f"job-{run}",
                             logger_id=f"rank-{writer}") as session:
            for step in range(STEPS):
                session.log_distributed("loss", table[writer, step], step=step)
            session.log("lr", 0.1)


def legend_numbers(text: str) -> tuple[int, float, float, float, int]:
    """step, mean, min, max and count from the merged line's legend."""
    found = re.search(r"step (\d+).*?writers, min–max\s*([-\d.e]+)\s+(?:smoothed \S+ · )?"
                      r"min ([-\d.e]+) max ([-\d.e]+).*?· (\d+) pts", text, re.S)
    assert found is not None, text
    step, mean, low, high, count = found.groups()
    return int(step), float(mean), float(low), float(high), int(count)


def hovered_legends(chart: Locator, fractions: tuple[float, ...] = (0.02, 0.5, 0.98)
                    ) -> Iterator[Locator]:
    """The chart's legend with the cursor at each fraction of the plot's width."""
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    for fraction in fractions:
        chart.locator(".u-over").hover(position={"x": box["width"] * fraction,
                                                 "y": box["height"] / 2})
        yield chart.locator(".legend")


def test_a_jobs_metric_is_one_merged_curve_with_its_writers_on_demand(
        live_server: ServerInfo, page: Page) -> None:
    """The merged curve's mean, min and max at the hovered step are numpy's across the four
    writers; a writer's own line comes on demand; the writers box lists the 4 processes."""
    run = f"merged-{uuid.uuid4().hex[:8]}"
    log_job(live_server.url, run)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, run))
    page.wait_for_selector("body[data-ready]")
    chart = page.locator('[data-metric="loss"]')
    expect(chart).to_have_attribute("data-merged", "1")
    assert stray_text(page) == []
    expect(chart).to_have_attribute("data-points", str(WRITERS * STEPS))
    assert any("/merged?" in r.url for r in requests)
    table = values()
    for legend in hovered_legends(chart):
        expect(legend).to_contain_text("mean across 4 writers, min–max")
        step, mean, low, high, count = legend_numbers(legend.inner_text())
        assert count == WRITERS
        column = table[:, step]
        assert mean == float(f"{column.mean():.5g}")
        assert (low, high) == (column.min(), column.max())
    # One writer on top of the merged curve: its own points.
    chart.locator("summary", has_text="single writers (4)").click()
    chart.locator('input[data-writer="rank-2"]').check()
    expect(chart.locator(".legend .item", has_text="writer rank-2")).to_have_count(1)
    next(hovered_legends(chart, (0.98,)))  # the last step
    item = chart.locator(".legend .item", has_text="writer rank-2")
    expect(item).to_contain_text(f"{table[2, STEPS - 1]:g}")
    expect(chart).to_have_attribute("data-points", str(WRITERS * STEPS))  # still the merged
    # The writers of the job: 4 processes on this host, all closed, the run finished.
    writers = page.locator("#writers")
    expect(writers.locator("summary")).to_have_text(
        f"Writers: 4 processes on 1 host ({socket.gethostname()}) · 4 closed")
    writers.locator("summary").click()
    expect(writers.locator("tbody tr")).to_have_count(4)
    expect(writers.locator('tr[data-writer="rank-0"] td').nth(3)).to_have_text("closed")
    expect(page.locator("main h1")).to_contain_text("finished")
    # Plain log() of the same processes stays a line per process (no rank here: one series).
    expect(page.locator('[data-metric="lr"]')).not_to_have_attribute("data-merged", "1")


def test_jobs_compared_are_each_one_merged_curve(live_server: ServerInfo, page: Page) -> None:
    """Two jobs on the compare page: each run's log_distributed metric is its own merged
    curve, not a line per writer; at the hovered step each run's entry shows the mean, min
    and max across its own writers (numpy's) and their count."""
    runs = [f"cmp-merged-{uuid.uuid4().hex[:6]}-{k}" for k in range(2)]
    for k, run in enumerate(runs):
        log_job(live_server.url, run, scale=k + 1.0)
    page.goto(f"{live_server.url}/#/compare/" + ",".join(f"{WS}/{PROJECT}/{r}" for r in runs))
    page.wait_for_selector("body[data-ready]")
    assert stray_text(page) == []
    chart = page.locator('[data-metric="loss"]')
    expect(chart).to_have_attribute("data-merged", "1")
    expect(chart).to_have_attribute("data-points", str(2 * WRITERS * STEPS))
    expect(chart.locator(".legend .item")).to_have_count(2)  # a line per run, not per writer
    for legend in hovered_legends(chart):
        step_text = re.search(r"step (\d+)", legend.inner_text())
        assert step_text is not None
        step = int(step_text.group(1))
        for k, run in enumerate(runs):
            item = legend.locator(".item", has_text=run).inner_text()
            found = re.search(r"min–max\)\s*([-\d.e]+)\s.*?min ([-\d.e]+) max ([-\d.e]+)"
                              r".*?· (\d+) pts", item, re.S)
            assert found is not None, item
            column = values()[:, step] * (k + 1)
            assert float(found.group(1)) == float(f"{column.mean():.5g}"), item
            assert (float(found.group(2)), float(found.group(3))) == (column.min(),
                                                                      column.max()), item
            assert int(found.group(4)) == WRITERS, item

"""Histogram and scatter series in a real browser: the distribution over steps (checked
against numpy), the slider's histogram at a step, clouds at a step (3-D as three
projections), in the run view and the compare view."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.sync_api import Page, expect

import metrana
from metrana.server import ServerInfo
from metrana.server.store import Store
from tests.dashboard.dashboard_helpers import run_hash

pytestmark = pytest.mark.timeout(600)

WS, PROJECT = "dash-values", "proj"
BINS, STEPS = 512, 10_000


def counts_at(step: int) -> Any:
    """The known series: a bump drifting across 512 bins, its height and spread changing."""
    centre = 50 + 400 * step / STEPS
    width = 10 + 30 * (step % 97) / 97
    bins = np.arange(BINS)
    return np.rint(1000 * np.exp(-((bins - centre) / width) ** 2) + (step % 5)).astype(np.int64)


def store_histograms(db: Path | str, run: str) -> None:
    """512-bin histograms over 10,000 steps, written straight into the server's database (the
    client's path is tested in tests/query/test_values.py; the page is what is tested here)."""
    store = Store(db)
    try:
        store.create_run({"run": {"workspace": WS, "project": PROJECT, "run_name": run},
                          "create_project_if_missing": True})
        edges = np.linspace(-1.0, 1.0, BINS + 1).tolist()
        t0 = time.time_ns() // 1_000_000 - STEPS
        for start in range(0, STEPS, 1000):
            points = [{"step": s, "timestamp_millis": t0 + s, "bin_edges": edges,
                       "counts": counts_at(s).tolist()} for s in range(start, start + 1000)]
            store.update_runs({"session_id": 1, "run_updates": [{
                "workspace": WS, "project": PROJECT, "run_name": run,
                "histogram_series": [{"metric_name": "weights", "scale": "ML_STEP",
                                      "points": points}]}]})
    finally:
        store.close()


def test_a_512_bin_histogram_over_10000_steps_is_drawn_and_its_steps_shown(
        live_server: ServerInfo, page: Page) -> None:
    store_histograms(live_server.db_path, "hist-big")
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "hist-big"))
    page.wait_for_selector("body[data-ready]")
    chart = page.locator('[data-metric="weights"][data-kind="histogram"]')
    expect(chart).to_have_attribute("data-steps", str(STEPS))
    detail = chart.locator(".value-detail")
    expect(detail).to_have_attribute("data-step", str(STEPS - 1))  # the last step at first
    expect(detail).to_have_attribute("data-bins", str(BINS))
    expect(detail).to_have_attribute("data-total", str(int(counts_at(STEPS - 1).sum())))
    # The distribution's columns: each the mean share of values per bin over its steps.
    answer = chart.evaluate("node => node.valueChart.answer")
    columns = len(answer["cells"])
    assert 100 <= columns <= 240 and answer["count"] == STEPS
    bounds = np.arange(columns + 1) * STEPS // columns
    assert answer["grid"] == np.linspace(-1.0, 1.0, BINS + 1).tolist()  # the series' own edges
    shares = np.array([counts_at(s) / counts_at(s).sum() for s in range(STEPS)])
    centres = (np.linspace(-1, 1, BINS + 1)[:-1] + np.linspace(-1, 1, BINS + 1)[1:]) / 2
    for c in (0, columns // 3, columns - 1):
        steps = range(bounds[c], bounds[c + 1])
        np.testing.assert_allclose(np.array(answer["cells"][c]) / answer["scale"],
                                   shares[bounds[c]:bounds[c + 1]].mean(0), atol=1e-6)
        assert answer["first"][c] == bounds[c] and answer["last"][c] == bounds[c + 1] - 1
        occupied = [np.flatnonzero(counts_at(s)) for s in steps]
        assert answer["min"][c] == pytest.approx(min(np.linspace(-1, 1, BINS + 1)[o[0]]
                                                     for o in occupied))
        assert answer["max"][c] == pytest.approx(max(np.linspace(-1, 1, BINS + 1)[o[-1] + 1]
                                                     for o in occupied))
        assert answer["mean"][c] == pytest.approx(
            np.mean([shares[s] @ centres for s in steps]), abs=1e-9)
    # The slider: the histogram at another step.
    chart.get_by_label("step of weights").fill("1234")
    expect(detail).to_have_attribute("data-step", "1234")
    expect(detail).to_have_attribute("data-total", str(int(counts_at(1234).sum())))
    expect(chart.locator(".chart-note")).to_have_text("step 1,234 of 10,000 logged")


def test_clouds_are_drawn_at_the_chosen_step_in_run_and_compare_views(
        live_server: ServerInfo, page: Page) -> None:
    rng = np.random.default_rng(5)
    for run in ("cloud-a", "cloud-b"):
        with metrana.session(workspace_name=WS, project_name=PROJECT, run_name=run,
                             ingestion_url=live_server.url) as session:
            for step in range(6):
                n = 100 * (step + 1)
                session.log_scatter("policy/actions", rng.normal(size=n), rng.normal(size=n),
                                    x_title="steer", y_title="throttle")
                xs, ys, zs = rng.normal(size=(3, n + 1))
                session.log_scatter3d("embedding", xs, ys, zs, step=step * 10)
                session.log_histogram("grads", rng.normal(size=1000), step=step)
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "cloud-a"))
    page.wait_for_selector("body[data-ready]")
    actions = page.locator('[data-metric="policy/actions"][data-kind="scatter"]')
    expect(actions).to_have_attribute("data-steps", "6")
    expect(actions.locator(".value-detail")).to_have_attribute("data-step", "5")
    expect(actions.locator(".plot")).to_have_attribute("data-points", "600")
    actions.get_by_label("step of policy/actions").fill("2")
    expect(actions.locator(".value-detail")).to_have_attribute("data-step", "2")
    expect(actions.locator(".plot")).to_have_attribute("data-points", "300")
    embedding = page.locator('[data-metric="embedding"][data-kind="scatter"]')
    expect(embedding.locator(".value-detail")).to_have_attribute("data-step", "50")
    expect(embedding.locator("canvas")).to_have_count(3)
    assert embedding.locator("canvas").evaluate_all("cs => cs.map(c => c.dataset.axes)") == \
        ["xy", "xz", "yz"]
    expect(embedding.locator(".plot")).to_have_attribute("data-points", "601")
    # Compare: one card per run of each series.
    page.goto(live_server.url + "/#/compare/" + ",".join(
        "/".join((WS, PROJECT, run)) for run in ("cloud-a", "cloud-b")))
    page.wait_for_selector("body[data-ready]")
    for metric, kind in (("policy/actions", "scatter"), ("embedding", "scatter"),
                         ("grads", "histogram")):
        cards = page.locator(f'[data-metric="{metric}"][data-kind="{kind}"]')
        expect(cards).to_have_count(2)
        expect(cards.locator("h3")).to_have_text([f"{metric} · cloud-a", f"{metric} · cloud-b"])
    grads = page.locator('[data-metric="grads"]').first
    expect(grads.locator(".value-detail")).to_have_attribute("data-total", "1000")

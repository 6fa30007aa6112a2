"""The dashboard in a real browser against a real ``metrana serve``, fed by the real client.

Every wait is on something the user would see (a row, a chart's ``data-points``); none sleeps.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from pathlib import Path

import pytest
from playwright.sync_api import Page, Request, expect

import metrana
from metrana.server import ServerInfo
from tests.dashboard.dashboard_helpers import (
    bucket_reads,
    charts,
    run_hash,
    server_for,
    store_series,
    stray_text,
)

pytestmark = pytest.mark.timeout(600)  # the first test may install Chromium (see conftest)

WS, PROJECT = "dash", "proj"


def noise(i: int) -> float:
    return math.sin(i * 12.9898) * 43758.5453 % 1.0  # deterministic, in [0, 1)


def log_ml_run(url: str, run: str, steps: int, *, config: dict[str, object] | None = None,
               envs: int = 0) -> None:
    with metrana.session(workspace_name=WS, project_name=PROJECT, run_name=run, ingestion_url=url,
                         experiment_name="exp-1", config=config) as session:
        for i in range(steps):
            session.log({"train/loss": 2 * math.exp(-i / 300) + 0.15 * noise(i)
                         + (1.5 if i == steps // 2 else 0.0),
                         "train/acc": 1 - math.exp(-i / 200) - 0.05 * noise(i + 7)})
            if i % 10 == 0:
                session.log("eval/loss", 2 * math.exp(-i / 300), labels={"split": "val"})
                session.log("eval/loss", 2.1 * math.exp(-i / 300), labels={"split": "test"})
        session.log("lr", 3e-4)
        for env in range(envs):
            for k in range(30):
                session.log_rl_episode("episode/return", 100 * (1 - math.exp(-k / 10))
                                       + 20 * noise(env * 100 + k), rl_step=k * 512,
                                       env_id=f"env-{env}")


def test_runs_page_lists_searches_and_selects_runs(live_server: ServerInfo, page: Page) -> None:
    log_ml_run(live_server.url, "list-alpha", 50)
    log_ml_run(live_server.url, "list-beta", 20)
    page.goto(live_server.url + "/")
    alpha = page.locator('#runs tr[data-run="list-alpha"]')
    beta = page.locator('#runs tr[data-run="list-beta"]')
    expect(alpha).to_contain_text(f"{WS} / {PROJECT}")
    expect(alpha).to_contain_text("exp-1")
    expect(alpha).to_contain_text("finished")
    expect(alpha.locator("td.num").last).to_have_text("111")  # 50 + 50 + 5 + 5 + 1 points
    # Nothing stray under the title (no notice after a delete: no text for it either).
    assert page.locator("main h1").evaluate("h => h.nextSibling.nodeName") == "DIV"
    assert stray_text(page) == []
    # Newest first.
    names = page.locator("#runs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert names.index("list-beta") < names.index("list-alpha")
    page.get_by_label("search runs").fill("alpha")
    expect(beta).to_have_count(0)
    expect(alpha).to_be_visible()
    page.get_by_label("search runs").fill("list-")
    # A run started while the page is open shows up (the list polls).
    log_ml_run(live_server.url, "list-gamma", 1)
    expect(page.locator('#runs tr[data-run="list-gamma"]')).to_be_visible(timeout=5000)
    page.get_by_label("select list-alpha").check()
    page.get_by_label("select list-beta").check()
    page.get_by_role("button", name="Compare selected (2)").click()
    expect(page.locator('[data-metric="train/loss"]')).to_have_attribute("data-points", "70")


def test_run_page_draws_a_chart_per_metric(live_server: ServerInfo, page: Page,
                                            tmp_path: Path) -> None:
    log_ml_run(live_server.url, "page-run", 1200, envs=8,
               config={"lr": 3e-4, "batch_size": 256, "seed": 1,
                       "optimizer": {"name": "adam", "betas": [0.9, 0.99]}})
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "page-run"))
    page.wait_for_selector("body[data-ready]")
    # One chart per metric, each holding its canvas, counting every point it represents.
    assert charts(page) == {"train/loss": "1200", "train/acc": "1200", "eval/loss": "240",
                            "lr": "1", "episode/return": "240"}
    assert stray_text(page) == []  # e.g. no 'null' where a run of one process has no writers
    for metric in ("train/loss", "eval/loss", "episode/return"):
        assert page.locator(f'[data-metric="{metric}"] canvas').count() >= 1
    # Grouped by prefix: un-prefixed metrics first, then prefixes in order.
    sections = page.locator("section.group").evaluate_all("s => s.map(e => e.dataset.prefix)")
    assert sections == ["", "episode", "eval", "train"]
    # Labels are separate lines of one chart.
    legend = page.locator('[data-metric="eval/loss"] .legend')
    expect(legend).to_contain_text("split=val")
    expect(legend).to_contain_text("split=test")
    # The config as a table.
    config = page.locator("#config")
    expect(config.locator("tr", has_text="optimizer/name")).to_contain_text("adam")
    expect(config.locator("tr", has_text="optimizer/betas/1")).to_contain_text("0.99")
    expect(config.locator("tr", has_text="batch_size")).to_contain_text("256")
    # Hover shows values.
    page.locator('[data-metric="train/loss"] .u-over').hover(position={"x": 1, "y": 50})
    expect(page.locator('[data-metric="train/loss"] .legend .x')).to_have_text(
        re.compile(r"^step [0-3]$"))
    expect(page.locator('[data-metric="train/loss"] .legend .item b')).to_have_text(
        re.compile(r"^[0-9.]+$"))
    # Zooming one chart zooms the others on the same x (steps), not the RL one (rl_steps);
    # a double-click zooms them all back out.
    over = page.locator('[data-metric="train/loss"] .u-over')
    box = over.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + 40)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 40, steps=4)
    page.mouse.up()
    for metric in ("train/loss", "train/acc"):
        page.wait_for_function(
            f"() => +document.querySelector('[data-metric=\"{metric}\"]').dataset.points < 500")
    assert charts(page)["episode/return"] == "240"
    over.dblclick()
    for metric, points in (("train/loss", "1200"), ("train/acc", "1200"), ("eval/loss", "240")):
        expect(page.locator(f'[data-metric="{metric}"]')).to_have_attribute("data-points", points)
    # Log scale and wall-clock x keep every chart drawn.
    page.get_by_text("log y").click()
    page.get_by_label("x axis").select_option("wall")
    assert charts(page)["train/loss"] == "1200"
    page.get_by_label("x axis").select_option("relative")
    expect(page.locator('[data-metric="train/loss"] .legend .x')).to_have_text(re.compile(r"s$"))
    page.get_by_label("x axis").select_option("step")
    page.get_by_text("log y").click()
    shot = tmp_path / "run-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("DASHBOARD_SCREENSHOT"):  # how docs/run-page.png is made
        shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])


def test_the_chart_library_is_fetched_once_and_only_by_pages_with_charts(
        tmp_path: Path, page: Page) -> None:
    """uPlot (50 KB) is fetched by a page that draws charts, early (js/first_read.js), and run
    when its first chart needs it: one request, the preload and the script matched; the list
    of runs, which has no chart, does not fetch it at all."""
    db = tmp_path / "s.sqlite3"
    store_series(db, "w", "p", "r", 500)
    uplot = "/static/vendor/uplot/uPlot.iife.min.js"
    with server_for(page, db) as info:
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url.removeprefix(info.url)))
        page.goto(info.url + "/#/project/w/p")
        page.wait_for_selector("#project[data-done] .group-chart canvas")
        assert asked.count(uplot) == 1, asked
        assert asked.index(uplot) < asked.index("/api/runs/w/p")  # with the page's first read
        # The list of runs loaded afresh, with nothing cached: no uPlot.
        page.goto("about:blank")
        page.context.new_cdp_session(page).send("Network.clearBrowserCache")
        asked.clear()
        page.goto(info.url + "/")
        expect(page.locator('#runs tr[data-run="r"]')).to_be_visible()
        assert uplot not in asked and "/static/dashboard.bundle.js" in asked
        # A run opened from it: uPlot fetched and run when the chart is drawn.
        page.locator("#runs a", has_text="r").click()
        page.wait_for_selector('[data-metric="loss"] canvas')
        assert asked.count(uplot) == 1, asked


def test_user_text_is_shown_as_text(live_server: ServerInfo, page: Page) -> None:
    hostile = '<img src=x onerror="window.pwned=1">'
    name = f"run {hostile} ./.."
    with metrana.session(workspace_name=WS, project_name=PROJECT, run_name=name,
                         ingestion_url=live_server.url, config={"note": hostile}) as session:
        session.log("loss", 1.0, labels={"tag": hostile})
    page.goto(live_server.url + "/")
    expect(page.locator("#runs a", has_text=name)).to_have_count(1)
    page.locator("#runs a", has_text=name).click()
    page.wait_for_selector("body[data-ready]")
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator("#config td.value")).to_have_text(hostile)
    expect(page.locator('[data-metric="loss"] .legend')).to_contain_text(f"tag={hostile}")
    assert charts(page) == {"loss": "1"}
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.pwned") is None


def test_points_logged_while_the_page_is_open_appear(live_server: ServerInfo, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    with metrana.session(workspace_name=WS, project_name=PROJECT, run_name="live-run",
                         ingestion_url=live_server.url) as session:
        for i in range(500):
            session.log("train/loss", 1 / (i + 1))
        for env in range(2):
            session.log_rl_episode("episode/return", 1.0, rl_step=0, env_id=f"env-{env}")
        session.flush()
        page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "live-run"))
        chart = page.locator('[data-metric="train/loss"]')
        expect(chart).to_have_attribute("data-points", "500")
        expect(page.locator("h1 .status")).to_have_text("running")
        first_load = len(bucket_reads(requests))
        for i in range(500, 3500):
            session.log("train/loss", 1 / (i + 1))
        session.log("train/new_metric", 1.0)
        for k in range(1, 40):  # the band grows, and a third environment joins it
            for env in range(3):
                session.log_rl_episode("episode/return", float(k), rl_step=k * 8,
                                       env_id=f"env-{env}")
        session.flush()
        expect(chart).to_have_attribute("data-points", "3500", timeout=5000)
        expect(page.locator('[data-metric="episode/return"]')).to_have_attribute(
            "data-points", str(2 + 39 * 3), timeout=5000)
        expect(page.locator('[data-metric="train/new_metric"]')).to_have_attribute(
            "data-points", "1", timeout=5000)
    # Once closed the run says so.
    expect(page.locator("h1 .status")).to_have_text("finished", timeout=10_000)
    # Live updates asked for what was new only: every later read of the loss series starts
    # past step 0 (the first read had none).
    reads = bucket_reads(requests)
    (loss,) = {what for what, _, _ in reads[:first_load] if what.startswith("series")}
    assert reads[:first_load].count((loss, None, None)) == 1
    later = [start for what, start, _ in reads[first_load:] if what == loss]
    assert later, [r.url for r in requests]
    assert all(start is not None and start > 0 for start in later), later
    # And polling asked only for series changed since its cursor.
    assert any(re.search(r"/series\?since=\d+", r.url) for r in requests)


def test_compare_overlays_runs(live_server: ServerInfo, page: Page) -> None:
    log_ml_run(live_server.url, "cmp-a", 120)
    log_ml_run(live_server.url, "cmp-b", 80)
    page.goto(f"{live_server.url}/#/compare/{WS}/{PROJECT}/cmp-a,{WS}/{PROJECT}/cmp-b")
    page.wait_for_selector("body[data-ready]")
    assert charts(page)["train/loss"] == "200"
    assert stray_text(page) == []
    legend = page.locator('[data-metric="train/loss"] .legend')
    expect(legend.locator(".item")).to_have_count(2)
    expect(legend).to_contain_text("cmp-a")
    expect(legend).to_contain_text("cmp-b")
    colours = legend.locator(".sw").evaluate_all("s => s.map(e => e.style.background)")
    assert len(set(colours)) == 2, colours
    # Labelled series: one line per (run, labels), the run's colour.
    expect(page.locator('[data-metric="eval/loss"] .legend .item')).to_have_count(4)


def test_an_answer_cut_off_is_shown_as_an_error_not_read_as_empty(
        live_server: ServerInfo, page: Page) -> None:
    """An answer whose body cannot be read (the connection dropped mid-answer) is an error
    the chart shows, not an empty answer the page trips over (it once threw "Cannot read
    properties of null" when a page was left while its buckets were read)."""
    store_series(live_server.db_path, WS, PROJECT, "cut", 500)
    page.route("**/api/query/many_runs_buckets",
               lambda route: route.fulfill(status=200, content_type="application/json",
                                           body='{"runs": [{"series": ['))
    page.goto(f"{live_server.url}/" + run_hash(WS, PROJECT, "cut"))
    error = page.locator('[data-metric="loss"] .placeholder.error')
    expect(error).to_contain_text(
        "the server's answer to /api/query/many_runs_buckets could not be read")
    assert stray_text(page) == []  # and the page fixture: no JavaScript error


def test_rl_run_shows_a_band_across_environments(live_server: ServerInfo, page: Page) -> None:
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    with metrana.session(workspace_name=WS, project_name=PROJECT, run_name="rl-run",
                         ingestion_url=live_server.url) as session:
        for env in range(4):
            for k in range(30):
                session.log_rl_episode("episode/return", float(env * 10 + k), rl_step=k * 64,
                                       env_id=f"env-{env}")
        session.log_rl_environment_step("reward", [[1.0] * 50] * 4, rl_step=0,
                                        env_id=[f"env-{e}" for e in range(4)], episode=0)
        session.log_rl_step("policy/loss", 0.5)
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "rl-run"))
    page.wait_for_selector("body[data-ready]")
    band = page.locator('[data-metric="episode/return"]')
    expect(band).to_have_attribute("data-kind", "rl")
    expect(band).to_have_attribute("data-points", "120")
    expect(page.locator('[data-metric="reward"]')).to_have_attribute("data-points", "200")
    expect(page.locator('[data-metric="policy/loss"]')).to_have_attribute("data-kind", "standard")
    assert ("band episode/return", None, None) in bucket_reads(requests)
    # Hover: the band's spread at that rl_step (4 environments: min 0+k, max 30+k).
    band.locator(".u-over").hover(position={"x": 3, "y": 50})
    expect(band.locator(".legend")).to_contain_text("across 4 environments")
    expect(band.locator(".legend")).to_contain_text("max 30")
    # A single environment on top of the band.
    band.locator("summary", has_text="single environments (4)").click()
    band.locator('input[data-env="env-2"]').check()
    expect(band.locator(".legend .item", has_text="env env-2")).to_have_count(1)
    assert any("environment=env-2" in r.url for r in requests)
    expect(band).to_have_attribute("data-points", "120")  # still the band's points


def test_million_point_series_page_is_ready_and_zooms(live_server: ServerInfo,
                                                      page: Page) -> None:
    store_series(live_server.db_path, WS, PROJECT, "million", 1_000_000)
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    page.goto(live_server.url + "/" + run_hash(WS, PROJECT, "million"))
    page.wait_for_selector("body[data-ready]")
    chart = page.locator('[data-metric="loss"]')
    expect(chart).to_have_attribute("data-points", "1000000")
    # The spike survives downsampling: the y axis reaches 50.
    expect(chart.locator(".chart-note")).to_contain_text("buckets (min–max shaded)")
    # Drag across a slice of the plot: finer buckets for that range only.
    for axis in ("step", "wall"):  # wall time: the page maps the visible times to steps
        page.get_by_label("x axis").select_option(axis)
        expect(chart).to_have_attribute("data-points", "1000000")
        box = chart.locator(".u-over").bounding_box()
        assert box is not None
        y = box["y"] + box["height"] / 2
        page.mouse.move(box["x"] + box["width"] * 0.40, y)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.45, y, steps=5)
        page.mouse.up()
        page.wait_for_function(
            "() => { const n = +document.querySelector('[data-metric=\"loss\"]').dataset.points;"
            " return n > 10000 && n < 100000; }")
        zoom = [(start, end) for _, start, end in bucket_reads(requests)
                if start is not None and end is not None]
        assert zoom, requests
        start, end = zoom[-1]
        assert 350_000 < start < end < 500_000
        requests.clear()
        # Double-click: the whole series again.
        chart.locator(".u-over").dblclick()
        expect(chart).to_have_attribute("data-points", "1000000")


def test_a_server_with_an_api_key_asks_for_it_once(tmp_path: Path, page: Page) -> None:
    """The server's own key (METRANA_SERVER_API_KEY) signs in too; a refused key says so and
    asks again; once signed in, navigating never asks again and the key is nowhere."""
    key = "s3cret-dashboard-key"
    with server_for(page, tmp_path / "auth.sqlite3", api_key=key) as info:
        with metrana.session(workspace_name=WS, project_name=PROJECT, run_name="keyed",
                             ingestion_url=info.url, api_key=key) as session:
            session.log("loss", 1.0)
        page.goto(info.url + "/")
        dialog = page.locator("dialog#sign-in")
        dialog.get_by_label("API key").fill("wrong")
        dialog.get_by_role("button", name="Sign in").click()
        expect(dialog).to_contain_text("That key was refused")
        dialog.get_by_label("API key").fill(key)
        dialog.get_by_role("button", name="Sign in").click()
        expect(page.locator('#runs tr[data-run="keyed"]')).to_contain_text("1")
        expect(page.locator("#who")).to_contain_text("the server's key")
        # Navigating on does not ask again; the key is in no URL and not in the page.
        page.locator('#runs a', has_text="keyed").click()
        # The run page's own chart (the runs page sets data-ready too: not a signal here).
        expect(page.locator('[data-metric="loss"]')).to_have_attribute("data-points", "1")
        assert charts(page) == {"loss": "1"}
        assert key not in page.url and key not in page.content()

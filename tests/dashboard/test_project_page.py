"""The project page in a real browser on a generated sweep: the run table (columns, sort,
filter), groups whose numbers equal numpy's on the same data, parallel-coordinate brushing,
the URL round trip; and the small things (smoothing, compact legends, the config table).

Every wait is on the page's own hooks: ``#project``'s ``data-done`` reaching its
``data-generation`` (the view asked for is drawn), a chart's ``data-groups``, the table's
``data-total``.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import numpy as np
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from metrana.server import ServerInfo
from metrana.server.store import Store
from tests.dashboard.conftest import LAUNCH_ARGS
from tests.dashboard.dashboard_helpers import run_hash, stray_text
from tests.sweep import SweepRun, bucket_means, write_sweep

pytestmark = pytest.mark.timeout(600)

WS, PROJECT = "lab", "sweep"


@pytest.fixture(scope="module")
def sweep(live_server: ServerInfo) -> list[SweepRun]:
    """12 runs (2 lrs × 2 algos × 3 seeds, ragged), a loss and an RL return in 3 envs."""
    return write_sweep(live_server.db_path, WS, PROJECT, points=60, envs=3, episodes=25)


@pytest.fixture(autouse=True)
def _quiet_numpy() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a bucket of one run has no std
        yield


def open_project(page: Page, server: ServerInfo, query: str = "", project: str = PROJECT
                 ) -> None:
    page.goto(f"{server.url}/#/project/{WS}/{project}" + (f"?{query}" if query else ""))
    settled(page)
    assert stray_text(page) == []


def settled(page: Page) -> None:
    """The view last asked for is drawn."""
    page.wait_for_function("() => { const p = document.getElementById('project');"
                           " return p && p.dataset.done === p.dataset.generation; }")


def table_runs(page: Page) -> list[str]:
    result: list[str] = page.eval_on_selector_all(
        "#run-table .rt-row", "rows => rows.sort((a, b) => a.dataset.index - b.dataset.index)"
                              ".map(r => r.dataset.run)")
    return result


def column_values(page: Page, column: str) -> list[str]:
    result: list[str] = page.eval_on_selector_all(
        f'#run-table .rt-row [data-col="{column}"]',
        "cells => cells.map(c => [+c.parentNode.dataset.index, c.textContent])"
        ".sort((a, b) => a[0] - b[0]).map(c => c[1])")
    return result


@pytest.mark.refused_requests
def test_the_run_table_has_columns_sorts_and_filters(live_server: ServerInfo,
                                                     sweep: list[SweepRun], page: Page) -> None:
    open_project(page, live_server)
    table = page.locator("#run-table")
    expect(table).to_have_attribute("data-total", "12")
    headers = page.eval_on_selector_all("#run-table .rt-head [data-col]",
                                        "cells => cells.map(c => c.dataset.col)")
    # The config keys that vary, the chosen metric's summaries (an RL one: last 10 episodes).
    assert headers == ["sys/name", "sys/status", "config/algo", "config/lr", "config/seed",
                       "return.last", "return.min", "return.max", "return.mean", "sys/created",
                       "sys/duration"]
    expect(page.locator('.rt-head [data-col="return.last"]')).to_have_text("return.last10")
    assert len(table_runs(page)) == 12
    # Sort by the RL summary, descending then ascending: the server's order is numpy's.
    last10 = {r.name: float(np.mean([v[-10:].mean() for _, v in r.returns.values()]))
              for r in sweep}
    header = page.locator('.rt-head [data-col="return.last"]')
    for direction in ("asc", "desc"):
        header.click()
        settled(page)
        expect(header).to_have_attribute("data-sort", direction)
        assert table_runs(page) == sorted(last10, key=lambda name: last10[name],
                                         reverse=direction == "desc")
    assert "sort=return.last%3Adesc" in page.url
    # The filter box: metrana.query's conditions, evaluated by the server.
    box = page.locator("#filter")
    box.fill('config/lr >= 1e-2 and config/algo == "ppo" and loss.last < 100')
    box.press("Enter")
    settled(page)
    expect(table).to_have_attribute("data-total", "3")
    assert sorted(table_runs(page)) == sorted(
        r.name for r in sweep if r.config["lr"] >= 1e-2 and r.config["algo"] == "ppo")
    assert set(column_values(page, "config/algo")) == {"ppo"}
    expect(page.locator("#filter-error")).to_be_hidden()
    # A bad expression: an inline error saying where, nothing else lost.
    box.fill("config/lr >= and")
    box.press("Enter")
    settled(page)
    error = page.locator("#filter-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("expected a value (a number")
    expect(error).to_contain_text("at column 14")
    box.fill("config/nothing > 1")
    box.press("Enter")
    settled(page)
    expect(error).to_contain_text("unknown attribute 'config/nothing'")
    box.fill("")
    box.press("Enter")
    settled(page)
    expect(table).to_have_attribute("data-total", "12")
    expect(error).to_be_hidden()


def hover_values(page: Page, metric: str, fraction: float) -> dict[str, dict[str, str]]:
    """Hover the chart at ``fraction`` of its width: each legend entry's numbers there."""
    chart = page.locator(f'.group-chart[data-metric="{metric}"]')
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * fraction, box["y"] + box["height"] / 2)
    page.wait_for_function(
        f"() => [...document.querySelectorAll('.group-chart[data-metric=\"{metric}\"] .legend "
        f".item')].every(i => i.dataset.x !== undefined)")
    result: dict[str, dict[str, str]] = chart.locator(".legend .item").evaluate_all(
        "items => Object.fromEntries(items.map(i => [i.dataset.group, {...i.dataset}]))")
    return result


def check_against_numpy(page: Page, metric: str, sweep: list[SweepRun], groups: dict[str, list[
        SweepRun]], band: str) -> None:
    chart = page.locator(f'.group-chart[data-metric="{metric}"]')
    lo, hi, n = (int(chart.get_attribute(f"data-{k}") or "") for k in ("lo", "hi", "n"))
    width = (hi - lo + 1) / n
    for fraction in (0.1, 0.5, 0.93):
        shown = hover_values(page, metric, fraction)
        assert set(shown) == set(groups)
        for label, members in groups.items():
            entry = shown[label]
            bucket = int((int(entry["x"]) - lo) / width)
            rows = []
            for run in members:
                if metric == "loss":
                    xs, vs = run.steps, run.loss
                else:
                    xs = np.concatenate([x for x, _ in run.returns.values()])
                    vs = np.concatenate([v for _, v in run.returns.values()])
                rows.append(bucket_means(xs, vs, lo, hi, n)[bucket])
            values = np.array(rows)
            count = int((~np.isnan(values)).sum())
            assert int(entry["count"]) == count
            if not count:
                continue
            avg = np.nanmean(values)
            assert float(entry["avg"]) == pytest.approx(avg, rel=1e-9)
            if band == "minmax":
                expected = (np.nanmin(values), np.nanmax(values))
            else:
                half = np.nanstd(values, ddof=1) / (math.sqrt(count) if band != "std" else 1)
                half *= 1.96 if band == "ci95" else 1
                expected = (avg - half, avg + half)
            if count > 1 or band == "minmax":
                assert float(entry["lo"]) == pytest.approx(expected[0], rel=1e-9)
                assert float(entry["hi"]) == pytest.approx(expected[1], rel=1e-9)


def test_groups_draw_the_mean_and_band_numpy_computes(live_server: ServerInfo,
                                                      sweep: list[SweepRun], page: Page) -> None:
    open_project(page, live_server, "group=config/lr&band=ci95&smooth=0")
    loss = page.locator('.group-chart[data-metric="loss"]')
    expect(loss).to_have_attribute("data-groups", "2")
    expect(page.locator('.group-chart[data-metric="return"]')).to_have_attribute("data-groups",
                                                                                 "2")
    entry = loss.locator('.legend .item[data-group="config/lr=0.001"]')
    expect(entry).to_have_attribute("data-runs", "6")
    # Hovering a group lists its runs.
    entry.hover()
    listed = entry.locator(".group-runs")
    expect(listed).to_be_visible()
    for run in sweep:
        if run.config["lr"] == 1e-3:
            expect(listed).to_contain_text(run.name)
    # One colour per group, the same on every chart.
    colours = page.eval_on_selector_all(
        ".group-chart .legend .item", "items => items.map(i => [i.dataset.group, "
                                      "i.querySelector('.sw').style.background])")
    by_group: dict[str, set[str]] = {}
    for group, colour in colours:
        by_group.setdefault(group, set()).add(colour)
    assert all(len(c) == 1 for c in by_group.values()) and len(
        {c.pop() for c in by_group.values()}) == 2
    groups = {f"config/lr={lr}": [r for r in sweep if r.config["lr"] == lr]
              for lr in (0.001, 0.01)}
    check_against_numpy(page, "loss", sweep, groups, "ci95")
    check_against_numpy(page, "return", sweep, groups, "ci95")
    # Another band kind and two keys: the server answers, the numbers follow.
    page.locator("#band").select_option("minmax")
    settled(page)
    check_against_numpy(page, "loss", sweep, groups, "minmax")
    open_project(page, live_server, "group=config/lr,config/algo&band=std&smooth=0")
    expect(loss).to_have_attribute("data-groups", "4")
    groups = {f"config/lr={lr}, config/algo={algo}": [
        r for r in sweep if r.config["lr"] == lr and r.config["algo"] == algo]
        for lr in (0.001, 0.01) for algo in ("dqn", "ppo")}
    check_against_numpy(page, "loss", sweep, groups, "std")


def brush(page: Page, axis: str, down_to: float) -> None:
    """Drag along a parallel-coordinates axis from its top to ``down_to`` of its height."""
    box = page.locator(f'.pc-axis[data-axis="{axis}"]').bounding_box()
    assert box is not None
    x = box["x"] + box["width"] / 2
    page.mouse.move(x, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(x, box["y"] + box["height"] * down_to, steps=4)
    page.mouse.up()
    settled(page)


def test_brushing_parallel_coordinates_filters_table_and_charts(
        live_server: ServerInfo, sweep: list[SweepRun], page: Page) -> None:
    open_project(page, live_server, "group=config/algo")
    coords = page.locator("#parcoords")
    expect(coords).to_have_attribute("data-lines", "12")
    expect(coords).to_have_attribute("data-selected", "12")
    # Drag along the lr axis over its upper half: lr = 0.01 only (the top of the axis).
    brush(page, "config/lr", 0.4)
    expect(coords).to_have_attribute("data-selected", "6")
    expect(page.locator("#run-table")).to_have_attribute("data-total", "6")
    assert set(column_values(page, "config/lr")) == {"0.01"}
    runs = page.locator('.group-chart[data-metric="loss"] .legend .item').evaluate_all(
        "items => items.map(i => +i.dataset.runs)")
    assert sum(runs) == 6
    assert "brush=" in page.url
    # A second brush on a text axis: algo = ppo of those.
    brush(page, "config/algo", 0.2)
    expect(page.locator("#run-table")).to_have_attribute("data-total", "3")
    assert set(column_values(page, "config/algo")) == {"ppo"}
    # Reopened from its URL, the view is the same.
    url = page.url
    page.goto("about:blank")
    page.goto(url)
    settled(page)
    expect(page.locator("#run-table")).to_have_attribute("data-total", "3")
    expect(page.locator("#parcoords")).to_have_attribute("data-selected", "3")
    # A click on an axis clears its brush.
    axis = page.locator('.pc-axis[data-axis="config/algo"]')
    axis.click()
    settled(page)
    expect(page.locator("#run-table")).to_have_attribute("data-total", "6")


def test_the_url_holds_the_view(live_server: ServerInfo, sweep: list[SweepRun],
                                page: Page) -> None:
    open_project(page, live_server)
    page.locator("#filter").fill("config/seed != 2")
    page.locator("#filter").press("Enter")
    settled(page)
    page.locator("#group-by summary").click()
    page.locator('#group-by input[value="config/algo"]').check()
    settled(page)
    page.locator("#band").select_option("stderr")
    settled(page)
    page.locator("#smoothing").fill("0.3")
    # The column chooser: two columns fewer; a sort; a zoom of the charts (drag across one).
    page.locator("#columns summary").click()
    page.locator('#columns input[value="config/seed"]').uncheck()
    settled(page)
    page.locator('#columns input[value="sys/created"]').uncheck()
    settled(page)
    page.locator("#project h1").click()  # a click elsewhere closes the chooser
    expect(page.locator("#columns")).not_to_have_attribute("open", "")
    headers = page.eval_on_selector_all("#run-table .rt-head [data-col]",
                                        "cells => cells.map(c => c.dataset.col)")
    assert headers == ["sys/name", "sys/status", "config/algo", "config/lr", "return.last",
                       "return.min", "return.max", "return.mean", "sys/duration"]
    page.locator('.rt-head [data-col="config/lr"]').click()
    settled(page)
    order = table_runs(page)
    chart = page.locator('.group-chart[data-metric="loss"]')
    whole = int(chart.get_attribute("data-hi") or "") - int(chart.get_attribute("data-lo") or "")
    chart.scroll_into_view_if_needed()
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] / 2, steps=4)
    page.mouse.up()
    settled(page)
    zoomed = [chart.get_attribute(f"data-{k}") for k in ("lo", "hi")]
    assert int(zoomed[1] or "") - int(zoomed[0] or "") < whole * 0.6
    url = page.url
    assert re.search(r"filter=config%2Fseed\+%21%3D\+2|filter=config%2Fseed%20%21%3D%202", url)
    assert "group=config%2Falgo" in url and "band=stderr" in url and "smooth=0.3" in url
    assert "cols=" in url and "sort=config%2Flr%3Aasc" in url and "x=" in url
    fresh = page.context.new_page()
    fresh.goto(url)
    settled(fresh)
    expect(fresh.locator("#filter")).to_have_value("config/seed != 2")
    expect(fresh.locator("#band")).to_have_value("stderr")
    expect(fresh.locator("#smoothing")).to_have_value("0.3")
    expect(fresh.locator("#run-table")).to_have_attribute("data-total", "8")
    assert fresh.eval_on_selector_all("#run-table .rt-head [data-col]",
                                      "cells => cells.map(c => c.dataset.col)") == headers
    expect(fresh.locator('.rt-head [data-col="config/lr"]')).to_have_attribute("data-sort", "asc")
    assert table_runs(fresh) == order
    loss = fresh.locator('.group-chart[data-metric="loss"]')
    assert [loss.get_attribute(f"data-{k}") for k in ("lo", "hi")] == zoomed
    expect(loss).to_have_attribute("data-groups", "2")
    expect(loss).to_have_attribute("data-band", "stderr")
    expect(loss.locator('.legend .item[data-group="config/algo=ppo"]')).to_have_attribute(
        "data-runs", "4")
    # The hash the issue documents: group and an url-encoded filter.
    fresh.goto(f"{live_server.url}/#/project/{WS}/{PROJECT}?group=config/lr&filter="
               + quote('config/algo == "dqn"'))
    settled(fresh)
    expect(fresh.locator("#run-table")).to_have_attribute("data-total", "6")
    expect(loss).to_have_attribute("data-groups", "2")
    fresh.close()


def test_a_long_table_holds_only_the_rows_in_view(live_server: ServerInfo, page: Page) -> None:
    """300 runs: the table draws the rows on screen, and reads further pages as it scrolls."""
    runs = write_sweep(live_server.db_path, WS, "long", lrs=(1e-3, 2e-3, 3e-3, 4e-3, 5e-3),
                       seeds=30, points=3, ragged=False)
    names = sorted(r.name for r in runs)
    open_project(page, live_server, "sort=sys/name:desc", project="long")
    expect(page.locator("#run-table")).to_have_attribute("data-total", "300")
    shown = table_runs(page)
    assert shown == names[::-1][:len(shown)] and 5 < len(shown) < 60
    page.locator("#run-table .rt-body").evaluate("b => { b.scrollTop = b.scrollHeight; }")
    page.wait_for_selector('#run-table .rt-row[data-index="299"]')
    shown = table_runs(page)
    assert shown == names[::-1][-len(shown):] and len(shown) < 60


WIDTHS = """async () => {
  const { parcoordsWidth, plotWidth } = await import("/static/js/project_page.js");
  const page = document.getElementById("main").clientWidth;
  return { scrollbar: window.innerWidth - document.documentElement.clientWidth,
           parcoords: [document.getElementById("parcoords").clientWidth, parcoordsWidth(page)],
           charts: [...document.querySelectorAll(".group-chart .plot")]
             .map((a) => [a.clientWidth, plotWidth(page)]) };
}"""


def test_the_first_view_is_drawn_at_the_widths_the_page_lays_out(
        live_server: ServerInfo, sweep: list[SweepRun], browser: Browser, chromium: str) -> None:
    """The first view is drawn without reading the page's layout (each read would lay out the
    half-built page): the parallel coordinates' and the charts' widths are computed from the
    page's width. In a browser that shows scrollbars, at one, two and three chart columns and
    past the page's widest, they are the widths the browser then lays out."""
    shown = browser.browser_type.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS,
                                        ignore_default_args=["--hide-scrollbars"])
    errors: list[str] = []
    try:
        for width in (700, 1000, 1300, 1900):
            context = shown.new_context(viewport={"width": width, "height": 900})
            page = context.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            open_project(page, live_server)
            got = page.evaluate(WIDTHS)
            context.close()
            assert got["scrollbar"] > 0 and not errors, (width, got, errors)
            laid_out, computed = got["parcoords"]
            assert laid_out == computed, (width, got)
            assert len(got["charts"]) == 2, got
            for laid_out, computed in got["charts"]:
                assert abs(laid_out - computed) <= 1, (width, got)  # a column's width rounds
    finally:
        shown.close()


def test_slow_parallel_coordinates_do_not_hold_back_the_table(
        live_server: ServerInfo, sweep: list[SweepRun], page: Page) -> None:
    """The parallel coordinates read every run (10,000 runs: ~200 ms of the server's, the
    table's first page ~50): while their answer is held back, the table and the charts are
    drawn; the parallel coordinates are drawn when it comes, and only then is the view done."""
    held: list[Route] = []

    def hold_columns(route: Route) -> None:
        if '"format":"columns"' in (route.request.post_data or ""):
            held.append(route)
        else:
            route.continue_()

    page.route("**/api/query/runs", hold_columns)
    page.goto(f"{live_server.url}/#/project/{WS}/{PROJECT}")
    expect(page.locator("#run-table")).to_have_attribute("data-total", "12")
    expect(page.locator(".group-chart .uplot")).to_have_count(2)
    assert len(held) == 1
    assert page.eval_on_selector("#parcoords", "node => node.dataset.lines ?? null") is None
    assert page.eval_on_selector("#project", "node => node.dataset.done ?? null") is None
    held[0].continue_()
    settled(page)
    expect(page.locator("#parcoords")).to_have_attribute("data-lines", "12")
    assert stray_text(page) == []


def test_the_runs_page_links_to_projects(live_server: ServerInfo, sweep: list[SweepRun],
                                         page: Page) -> None:
    page.goto(f"{live_server.url}/")
    page.locator(f'#runs tr[data-project="{PROJECT}"] a.project-link').first.click()
    settled(page)
    expect(page.locator("#run-table")).to_have_attribute("data-total", "12")


def test_smoothing_is_tensorboards_debiased_ema(live_server: ServerInfo, page: Page) -> None:
    page.goto(f"{live_server.url}/")
    page.wait_for_selector("#runs")
    rng = np.random.default_rng(1)
    values = rng.normal(0, 1, 50).tolist()
    values[7] = None  # a gap is skipped, not a zero
    smoothed, constant = page.evaluate(
        "async ([values]) => { const m = await import('/static/js/columns.js');"
        " return [m.smooth(values, 0.6), m.smooth(Array(40).fill(3.25), 0.9)]; }", [values])
    assert constant == pytest.approx([3.25] * 40, rel=1e-12)  # a constant smooths to itself
    last, n = 0.0, 0
    for value, got in zip(values, smoothed, strict=True):
        if value is None:
            assert got is None
            continue
        last = last * 0.6 + 0.4 * value
        n += 1
        assert got == pytest.approx(last / (1 - 0.6 ** n), rel=1e-12)


def test_many_runs_get_a_compact_legend_and_a_config_table_stays_short(
        live_server: ServerInfo, page: Page) -> None:
    runs = write_sweep(live_server.db_path, WS, "many", lrs=(1e-3, 2e-3, 3e-3, 4e-3, 5e-3),
                       algos=("a", "b"), seeds=1, points=20)
    store = Store(live_server.db_path)
    try:  # a run with 7 config keys
        store.update_runs({"session_id": 2, "run_updates": [{
            "workspace": WS, "project": "many", "run_name": runs[0].name, "attributes": [
                {"path": f"config/extra{i}", "int_value": i} for i in range(4)]}]})
    finally:
        store.close()
    names = ",".join(f"{WS}/many/{r.name}" for r in runs)
    page.goto(f"{live_server.url}/#/compare/{names}")
    page.wait_for_selector('[data-metric="loss"] .legend .item >> nth=9')
    legend = page.locator('[data-metric="loss"] .legend')
    expect(legend).to_have_class(re.compile(r"\bcompact\b"))
    colours = legend.locator(".sw").evaluate_all("s => s.map(e => e.style.background)")
    assert len(set(colours)) == 10  # a palette of at least 12
    # Hovering a name highlights its line and shows its value.
    legend.locator(".item", has_text=runs[3].name).hover()
    expect(legend.locator(".focus")).to_contain_text(runs[3].name)
    # Ungrouped, the project page draws each run (past 8: the compact legend too).
    open_project(page, live_server, project="many")
    expect(page.locator('.group-chart[data-metric="loss"] .legend')).to_have_class(
        re.compile(r"\bcompact\b"))
    assert page.locator('.group-chart[data-metric="loss"]').get_attribute("data-groups") is None
    # The config table: 7 keys start collapsed, 3 open.
    page.goto(f"{live_server.url}/" + run_hash(WS, "many", runs[0].name))
    page.wait_for_selector("#config")
    expect(page.locator("#config")).not_to_have_attribute("open", "")
    page.goto(f"{live_server.url}/" + run_hash(WS, "many", runs[1].name))
    page.wait_for_selector("#config[open]")

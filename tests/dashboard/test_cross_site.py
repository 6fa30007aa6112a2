"""What a web page of another origin can do to ``metrana serve`` through the user's own
browser (real Chromium, real server): write nothing, read nothing through DNS rebinding, and
run nothing through hostile names in the dashboard.

Every wait is on something only the test's page sets or a response of the server; none sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Response, expect

import metrana
from metrana.server import ServerInfo, background_server
from tests.dashboard.conftest import LAUNCH_ARGS, WAIT_MS
from tests.dashboard.dashboard_helpers import charts, run_hash, server_for
from tests.helpers import wait_until
from tests.support import QuietHandler, plain_http_server

pytestmark = pytest.mark.timeout(300)

MINE = {"run": {"workspace": "ws", "project": "proj", "runName": "mine"},
        "createProjectIfMissing": True}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerInfo]:
    """A fresh server holding one run with no points, and another name it answers to."""
    with background_server(tmp_path / "s.sqlite3", allowed_hosts=["metrana.test"]) as info:
        httpx.post(info.url + "/v1/runs", json=MINE).raise_for_status()
        yield info


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    """Another site: a page served from another loopback port (a different origin)."""

    class Page(QuietHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            body = b"<!doctype html><title>elsewhere</title><p id=here>another site</p>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with plain_http_server(Page) as url:
        yield url


def stored(info: ServerInfo) -> dict[str, int]:
    runs = httpx.get(info.url + "/api/runs").json()["runs"]
    return {r["run"]: r["point_count"] for r in runs}


# What a hostile page sends: bodies that would create a run and write a point.
ATTACK = """async ([server, create, update]) => {
  const sent = [];
  for (const [path, body] of [["/v1/runs", create], ["/v1/runs:update", update]]) {
    for (const type of ["text/plain", "application/x-www-form-urlencoded"]) {
      const r = await fetch(server + path, {mode: "no-cors", method: "POST",
                                            headers: {"Content-Type": type}, body});
      sent.push(`no-cors ${path} ${type}: ${r.type}`);
    }
    try {  // a JSON write needs a preflight first
      await fetch(server + path, {method: "POST", headers: {"Content-Type": "application/json"}, body});
      sent.push(`cors ${path}: answered`);
    } catch (error) {
      sent.push(`cors ${path}: ${error.name}`);
    }
  }
  navigator.sendBeacon(server + "/v1/runs", create);
  return sent;
}"""
THEIRS = ('{"run": {"workspace": "ws", "project": "proj", "runName": "theirs"}, '
          '"createProjectIfMissing": true}')
POINT = ('{"sessionId": "9", "runUpdates": [{"workspace": "ws", "project": "proj", '
         '"runName": "mine", "series": [{"metricName": "loss", "scale": "ML_STEP", '
         '"points": [{"step": "0", "floatValue": 1.0}]}]}]}')


def test_a_page_of_another_origin_writes_nothing(server: ServerInfo, elsewhere: str,
                                                 browser: Browser) -> None:
    """no-cors POSTs (text/plain, a form's type) and a beacon reach the server and are refused
    with 403; a JSON POST stops at its refused preflight; a form posted into a frame too.
    Nothing is stored."""
    answers: list[Response] = []
    context = browser.new_context()  # its console fills with the refusals: not `page`
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.on("response", lambda r: answers.append(r) if r.url.startswith(server.url) else None)
    page.goto(elsewhere + "/")
    sent = page.evaluate(ATTACK, [server.url, THEIRS, POINT])
    assert sent == [
        "no-cors /v1/runs text/plain: opaque",
        "no-cors /v1/runs application/x-www-form-urlencoded: opaque",
        "cors /v1/runs: TypeError",
        "no-cors /v1/runs:update text/plain: opaque",
        "no-cors /v1/runs:update application/x-www-form-urlencoded: opaque",
        "cors /v1/runs:update: TypeError",
    ]
    # A form, as any page may post one, into a frame of that page; text/plain sends
    # "name=value", so the "=" goes inside a string: a valid request writing metric "lo=ss".
    cut = POINT.index('"loss"') + len('"lo')
    with page.expect_response(lambda r: r.request.frame != page.main_frame):
        page.evaluate("""([action, name, value]) => {
          const frame = document.createElement("iframe");
          frame.name = "sink";
          document.body.append(frame);
          const form = Object.assign(document.createElement("form"),
                                     {method: "POST", action, target: "sink", enctype: "text/plain"});
          form.append(Object.assign(document.createElement("input"), {name, value}));
          document.body.append(form);
          form.submit();
        }""", [server.url + "/v1/runs:update", POINT[:cut], POINT[cut:]])
    # Four fetches, the beacon and the form reached the server; each was refused.
    wait_until(lambda: len(answers) >= 6)
    heard = [(r.request.method, r.status) for r in answers]
    # The frame shows why (the fetches' answers are opaque even to the test's browser).
    expect(page.frame_locator("iframe").locator("body")).to_contain_text(
        f"cross-origin POST refused: Origin '{elsewhere}' is not this server's own origin")
    context.close()
    assert heard == [("POST", 403)] * 6, heard
    assert stored(server) == {"mine": 0}


def test_the_dashboard_loads_and_writes_to_its_own_server(server: ServerInfo, page: Page) -> None:
    """Its own pages are not a foreign origin: the dashboard loads, and a write from it passes."""
    page.goto(server.url + "/")
    expect(page.locator('#runs tr[data-run="mine"]')).to_have_count(1)
    answer = page.evaluate("""async () => {
      const r = await fetch("/api/query/runs", {method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({workspace: "ws", project: "proj"})});
      return [r.status, (await r.json()).runs.map((run) => run.name)];
    }""")
    assert answer == [200, ["mine"]]


@pytest.fixture(scope="module")
def resolving_browser(chromium: str, browser: Browser) -> Iterator[Browser]:
    """Chromium whose DNS sends rebind.test and metrana.test to 127.0.0.1: a page of a name
    rebound to loopback, as DNS rebinding makes one."""
    rules = "MAP rebind.test 127.0.0.1, MAP metrana.test 127.0.0.1"
    resolving = browser.browser_type.launch(
        executable_path=chromium, headless=True,
        args=[*LAUNCH_ARGS, f"--host-resolver-rules={rules}"])
    try:
        yield resolving
    finally:
        resolving.close()


def test_a_rebound_name_reads_nothing_and_an_allowed_one_works(
        server: ServerInfo, resolving_browser: Browser) -> None:
    """A name that resolves to loopback but is not the server's is refused (page and API);
    a name given with --allowed-host serves the dashboard, whose writes then pass."""
    port = urlsplit(server.url).port
    context = resolving_browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        response = page.goto(f"http://rebind.test:{port}/")
        assert response is not None and response.status == 403
        expect(page.locator("body")).to_contain_text("--allowed-host rebind.test")
        read = page.evaluate("async () => (await fetch('/api/runs')).status")
        assert read == 403
        response = page.goto(f"http://metrana.test:{port}/")
        assert response is not None and response.status == 200
        expect(page.locator('#runs tr[data-run="mine"]')).to_have_count(1)
        status = page.evaluate("""async (body) => (await fetch("/v1/runs:update", {method: "POST",
            headers: {"Content-Type": "application/json"}, body})).status""", POINT)
        assert status == 200
    finally:
        context.close()
    assert stored(server) == {"mine": 1}


# Each field the dashboard shows gets markup that would run if it were ever parsed as HTML.
# No whitespace: metric names may not hold any.
def metric(name: str) -> str:
    """The selector of a metric's chart (the name quoted for CSS)."""
    return '[data-metric="' + name.replace("\\", "\\\\").replace('"', '\\"') + '"]'


def hostile(field: str) -> str:
    return (f"{field}<img/src=x/onerror=window.pwned='{field}'><svg/onload=window.pwned='{field}'>"
            f"\"'><script>window.pwned='{field}'</script>")


PROBE = """() => ({
  pwned: window.pwned ?? null,
  violations: window.violations.length,
  handlers: [...document.querySelectorAll("*")].filter(
    (e) => [...e.attributes].some((a) => a.name.startsWith("on"))).length,
  injected: document.querySelectorAll("main img, main svg, main script, main iframe").length,
})"""
CLEAN = {"pwned": None, "violations": 0, "handlers": 0, "injected": 0}


def test_hostile_names_in_every_field_run_nothing(tmp_path: Path, page: Page) -> None:
    """Workspace, project, run, experiment, metric, label (key and value), environment and
    config values full of markup (config keys cannot hold any: the client refuses it): shown
    as text on the runs, run and compare pages; nothing runs, nothing is parsed into an
    element, and no Content-Security-Policy violation happens."""
    page.add_init_script("window.violations = []; document.addEventListener("
                         "'securitypolicyviolation', (e) => window.violations.push(e.blockedURI));")
    ws, project = hostile("workspace"), hostile("project")
    runs = [hostile("run"), hostile("second-run")]
    with server_for(page, tmp_path / "xss.sqlite3") as info:
        for run in runs:
            with metrana.session(workspace_name=ws, project_name=project, run_name=run,
                                 experiment_name=hostile("experiment"), ingestion_url=info.url,
                                 config={"note": hostile("config-value")}
                                 ) as session:
                session.log(hostile("metric"), 1.0, labels={hostile("label-key"):
                                                            hostile("label-value")})
                session.log_rl_episode(hostile("rl-metric"), 2.0, rl_step=0,
                                       env_id=hostile("env"))
        page.goto(info.url + "/")
        page.wait_for_selector("body[data-ready]")
        expect(page.locator("#runs")).to_contain_text(runs[0])
        expect(page.locator("#runs")).to_contain_text(ws)
        assert page.evaluate(PROBE) == CLEAN

        page.goto(info.url + "/" + run_hash(ws, project, runs[0]))
        page.wait_for_selector("body[data-ready]")
        assert charts(page) == {hostile("metric"): "1", hostile("rl-metric"): "1"}
        header = page.locator("h1")
        expect(header).to_contain_text(runs[0])
        for field in ("workspace", "project", "experiment", "config-value"):
            expect(page.locator("main")).to_contain_text(hostile(field))
        expect(page.locator(metric(hostile("metric")) + " .legend")).to_contain_text(
            f"{hostile('label-key')}={hostile('label-value')}")
        envs = page.locator(metric(hostile("rl-metric")) + " .envs")
        envs.locator("summary").click()
        expect(envs).to_contain_text(hostile("env"))
        assert page.evaluate(PROBE) == CLEAN

        compare = "#/compare/" + ",".join(run_hash(ws, project, r)[len("#/run/"):] for r in runs)
        page.goto(info.url + "/" + compare)
        page.wait_for_selector("body[data-ready]")
        for run in runs:
            expect(page.locator("main")).to_contain_text(run)
        assert page.evaluate(PROBE) == CLEAN

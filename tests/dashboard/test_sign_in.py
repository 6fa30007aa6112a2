"""Signing in to the dashboard with a key, in a real browser: once per browser session, a
cookie no script can read, the key kept nowhere, the key's workspaces only, sign-out, and a
revoked key's session ended."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

import metrana
from metrana.server.store import Store
from tests.dashboard.conftest import WAIT_MS
from tests.dashboard.dashboard_helpers import server_for
from tests.support import make_key

pytestmark = pytest.mark.timeout(600)  # the first test may install Chromium (see conftest)


def log_run(url: str, key: str, workspace: str, run: str) -> None:
    with metrana.session(api_key=key, workspace_name=workspace, project_name="p",
                         run_name=run, ingestion_url=url) as session:
        session.log("loss", 1.0)


def sign_in(page: Page, key: str) -> None:
    dialog = page.locator("dialog#sign-in")
    dialog.get_by_label("API key").fill(key)
    dialog.get_by_role("button", name="Sign in").click()
    expect(dialog).to_have_count(0, timeout=WAIT_MS)


def signed_in(page: Page, url: str, key: str, run: str) -> None:
    """A run of team-a logged with ``key``, the runs page opened and signed in with it."""
    log_run(url, key, "team-a", run)
    page.goto(url + "/")
    sign_in(page, key)
    expect(page.locator(f'#runs tr[data-run="{run}"]')).to_be_visible(timeout=WAIT_MS)


def test_a_key_signs_in_once_and_is_kept_nowhere(tmp_path: Path, page: Page) -> None:
    db = tmp_path / "s.sqlite3"
    owner, _ = make_key(db, "admin", "*")
    key, prefix = make_key(db, "read", "team-a")
    with server_for(page, db) as info:
        log_run(info.url, owner, "team-a", "mine")
        log_run(info.url, owner, "team-b", "theirs")
        page.goto(info.url + "/")
        sign_in(page, key)
        expect(page.locator('#runs tr[data-run="mine"]')).to_be_visible(timeout=WAIT_MS)
        # not its workspace (the same answer as "mine": absent now, absent for good)
        expect(page.locator('#runs tr[data-run="theirs"]')).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("#who")).to_contain_text(f"API key mk_{prefix}_… · read", timeout=WAIT_MS)
        (cookie,) = page.context.cookies()
        port = info.url.rsplit(":", 1)[1]
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["expires"]) == (
            f"metrana_session_{port}", True, "Strict", -1)  # -1: ends with the browser session
        assert key not in cookie["value"]
        kept = page.evaluate("() => document.cookie + JSON.stringify({...localStorage}) + "
                             "JSON.stringify({...sessionStorage})")
        assert kept == "{}{}"  # the cookie is invisible to scripts; nothing else is stored
        assert key not in page.content() and key not in page.url
        # Another page of the run: no second sign-in, and the page's own POSTs (its reads,
        # through js/api.js) carry the session's CSRF header and are answered.
        posts: list[Request] = []
        page.on("requestfinished", lambda r: posts.append(r) if r.method == "POST" else None)
        page.locator("#runs a", has_text="mine").click()
        page.wait_for_selector("body[data-ready]")
        expect(page.locator("dialog#sign-in")).to_have_count(0, timeout=WAIT_MS)
        assert posts and all(p.url.startswith(info.url + "/api/query/") for p in posts)
        for post in posts:
            response = post.response()
            assert response is not None and response.status == 200, post.url
            assert post.headers["x-metrana-csrf"], post.url
        # Sign out: the session ends on the server, and the page asks again.
        page.locator("#sign-out").click()
        expect(page.locator("dialog#sign-in")).to_be_visible(timeout=WAIT_MS)
        with httpx.Client(base_url=info.url, cookies={cookie["name"]: cookie["value"]}) as old:
            assert old.get("/api/runs").status_code == 401
        assert page.context.cookies() == []


def test_revoking_the_key_signs_the_dashboard_out(tmp_path: Path, page: Page) -> None:
    """The runs page re-reads every few seconds: once the key is revoked, it is refused, and
    the page asks to sign in again, with another key."""
    db = tmp_path / "s.sqlite3"
    key, prefix = make_key(db, "write", "team-a")
    other, _ = make_key(db, "read", "team-a")
    with server_for(page, db) as info:
        signed_in(page, info.url, key, "r")
        store = Store(db)
        try:
            store.revoke_key(prefix)
        finally:
            store.close()
        expect(page.locator("dialog#sign-in")).to_be_visible(timeout=WAIT_MS)
        sign_in(page, other)
        expect(page.locator("#who")).to_contain_text("· read", timeout=WAIT_MS)
        expect(page.locator('#runs tr[data-run="r"]')).to_be_visible(timeout=WAIT_MS)


def test_a_signed_in_page_opened_anew_reads_at_once(tmp_path: Path, page: Page) -> None:
    """A run's page, a compare page and a project's page opened anew (a reload) while signed
    in: their first reads, asked before the page's modules load (js/first_read.js: a GET, or
    for runs compared a POST once the session is known), and the page's POSTs (with the
    session's CSRF value, learnt first) are served (nothing refused), the page drawn, no
    second sign-in. (They were refused with 403 before: the page's first POST went before it
    knew its session.)"""
    db = tmp_path / "s.sqlite3"
    key, _ = make_key(db, "admin", "*")
    with server_for(page, db) as info:
        log_run(info.url, key, "team-a", "yours")
        signed_in(page, info.url, key, "mine")
        refused: list[str] = []
        page.on("response", lambda r: refused.append(r.url) if r.status >= 400 else None)
        chart = "#main .chart[data-metric='loss'] canvas"
        for path, drawn in (("/#/run/team-a/p/mine", chart),
                            ("/#/compare/team-a/p/mine,team-a/p/yours", chart),
                            ("/#/project/team-a/p", "#project[data-done='1'] #run-table "
                                                    ".rt-row[data-run='mine']")):
            page.goto(info.url + path)
            page.reload()
            expect(page.locator(drawn).first).to_be_visible(timeout=WAIT_MS)
            expect(page.locator("#main p.error")).to_have_count(0)
            expect(page.locator("dialog#sign-in")).to_have_count(0)
        assert refused == []

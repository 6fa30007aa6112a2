"""Changing a run from the dashboard, in a real browser: its tags and notes (signed in with a
write key), renaming it and deleting it (signed in with an admin key) through a dialog that
names it. The dashboard's writes carry the session's CSRF header, or the server refuses them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

import metrana
from tests.dashboard.dashboard_helpers import run_hash, server_for
from tests.dashboard.test_sign_in import sign_in
from tests.support import make_key

pytestmark = pytest.mark.timeout(600)  # the first test may install Chromium (see conftest)


def _attributes(url: str, run: str, key: str) -> dict[str, Any]:
    detail = httpx.get(f"{url}/api/runs/ws/p/{run}", headers={"Authorization": f"Bearer {key}"})
    return {path: a["value"] for path, a in detail.json()["attributes"].items()}


def test_tags_and_notes_are_edited_on_the_run_page(tmp_path: Path, page: Page) -> None:
    db = tmp_path / "e.sqlite3"
    key, _ = make_key(db, "write", "ws")
    with server_for(page, db) as info:
        with metrana.session(workspace_name="ws", project_name="p", run_name="r", api_key=key,
                             ingestion_url=info.url, tags=["old"], notes="") as run:
            run.log("loss", 1.0)
        page.goto(info.url + "/" + run_hash("ws", "p", "r"))
        sign_in(page, key)
        expect(page.locator("#run-tags .tag")).to_have_text(["old×"])
        page.get_by_label("add a tag").fill("baseline")
        page.get_by_label("add a tag").press("Enter")
        expect(page.locator("#edit-status")).to_have_text("tags saved")
        expect(page.locator("#run-tags .tag")).to_have_text(["old×", "baseline×"])
        page.get_by_label("remove tag old").click()
        expect(page.locator("#run-tags .tag")).to_have_text(["baseline×"])
        assert _attributes(info.url, "r", key)["sys/tags"] == ["baseline"]
        page.get_by_label("notes").fill("lr 3e-4 diverged at 10k")
        page.get_by_label("add a tag").focus()  # leaving the notes saves them
        expect(page.locator("#edit-status")).to_have_text("notes saved")
        assert _attributes(info.url, "r", key)["sys/notes"] == "lr 3e-4 diverged at 10k"
        # The runs table shows the tags, and its search finds them.
        page.goto(info.url + "/")
        row = page.locator('#runs tr[data-run="r"]')
        expect(row.locator(".tag")).to_have_text(["baseline"])
        page.get_by_label("search runs").fill("baseline")
        expect(page.locator("#runs tbody tr")).to_have_count(1)


def test_delete_asks_naming_the_run_then_deletes_it(tmp_path: Path, page: Page) -> None:
    db = tmp_path / "d.sqlite3"
    key, _ = make_key(db, "admin", "ws")
    auth = {"Authorization": f"Bearer {key}"}
    with server_for(page, db) as info:
        for name in ("keep", "doomed"):
            with metrana.session(workspace_name="ws", project_name="p", run_name=name,
                                 ingestion_url=info.url, api_key=key) as run:
                run.log("loss", [1.0, 2.0, 3.0])
        page.goto(info.url + "/" + run_hash("ws", "p", "doomed"))
        sign_in(page, key)
        page.wait_for_selector("body[data-ready]")
        page.locator("#delete-run").click()
        dialog = page.locator("dialog.confirm")
        expect(dialog.locator("h2")).to_have_text("Delete run ws/p/doomed?")
        expect(dialog).to_contain_text("1 series and 3 points")
        dialog.get_by_role("button", name="Cancel").click()
        expect(dialog).to_have_count(0)
        assert httpx.get(f"{info.url}/api/runs/ws/p/doomed", headers=auth).status_code == 200
        page.locator("#delete-run").click()
        page.locator("dialog.confirm").get_by_role("button", name="Delete run").click()
        expect(page.locator(".notice")).to_have_text("deleted ws/p/doomed: 3 points removed")
        expect(page.locator("#runs tbody tr")).to_have_count(1)
        expect(page.locator('#runs tr[data-run="keep"]')).to_have_count(1)
        assert httpx.get(f"{info.url}/api/runs/ws/p/doomed", headers=auth).status_code == 404


def test_rename_from_the_dialog_goes_to_the_renamed_run(tmp_path: Path, page: Page) -> None:
    with server_for(page, tmp_path / "n.sqlite3") as info:
        with metrana.session(workspace_name="ws", project_name="p", run_name="before",
                             ingestion_url=info.url) as run:
            run.log("loss", 1.0)
        page.goto(info.url + "/" + run_hash("ws", "p", "before"))
        page.wait_for_selector("body[data-ready]")
        page.locator("#rename-run").click()
        dialog = page.locator("dialog.confirm")
        expect(dialog.locator("h2")).to_have_text("Rename run ws/p/before")
        dialog.get_by_label("new name").fill("after")
        dialog.get_by_role("button", name="Rename").click()
        expect(page.locator("h1")).to_contain_text("after")
        assert [r["run"] for r in httpx.get(f"{info.url}/api/runs").json()["runs"]] == ["after"]

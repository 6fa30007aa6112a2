"""Deleting, renaming and editing runs: the CLI, the server's routes, and what the stores keep.

On both stores: ``metrana runs delete`` says what it removes and removes every row of the
run (a SQLite file gives the space back with ``--compact``); ``metrana runs rename`` keeps
the data under the new name; a client still logging to the old name is refused (HTTP 410)
with a message saying what happened, and the refused points are counted.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

import metrana
from metrana._cli import main
from metrana.server import background_server
from metrana.server.store import Store
from tests.support import make_key

RUN_ROWS = ("SELECT (SELECT COUNT(*) FROM runs), (SELECT COUNT(*) FROM series), "
            "(SELECT COUNT(*) FROM chunks), (SELECT COUNT(*) FROM sessions), "
            "(SELECT COUNT(*) FROM attributes), (SELECT COUNT(*) FROM writer_sessions), "
            "(SELECT COUNT(*) FROM run_writers)")


def _rows(db_target: str) -> tuple[int, ...]:
    """How many rows each table holds (runs, series, chunks, sessions, attributes, writer
    sessions, the keys that wrote to runs), read with the store's own connection."""
    store = Store(db_target)
    try:
        with store.db.read() as tx:
            row = tx.one(RUN_ROWS)
    finally:
        store.close()
    assert row is not None
    return tuple(int(v) for v in row)


def _log_run(url: str, name: str, points: int, **init: Any) -> None:
    """A run of ``points`` points of loss (random: they do not compress away) and one of acc."""
    with metrana.session(workspace_name="ws", project_name="p", run_name=name,
                         ingestion_url=url, log_level="Off", config={"lr": 0.1},
                         **init) as run:
        run.log("loss", np.random.default_rng(0).random(points))
        run.log("acc", 1.0)


def test_delete_removes_every_row_of_the_run_and_says_how_many_points(
        db_target: str, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    key, _ = make_key(db_target, "admin", "ws")  # the runs record it as their writer
    monkeypatch.setenv("METRANA_API_KEY", key)
    with background_server(db_target) as info:
        _log_run(info.url, "keep", 10)
        before = _rows(db_target)
        _log_run(info.url, "gone", 5000, tags=["x"])
        assert _rows(db_target)[-1] == before[-1] + 1
        assert main(["runs", "delete", "ws/p/gone", "--yes", "--url", info.url]) == 0
        assert capsys.readouterr().out.splitlines()[0] == \
            "deleted ws/p/gone: 5,001 points in 2 series removed"
        assert _rows(db_target) == before  # the other run untouched, nothing of this one left
        listed = httpx.get(f"{info.url}/api/runs", headers={"Authorization": f"Bearer {key}"})
        assert [r["run"] for r in listed.json()["runs"]] == ["keep"]
        # Deleting again: it says what became of it.
        assert main(["runs", "delete", "ws/p/gone", "--yes", "--db", db_target]) == 1
        assert "no run 'ws/p/gone'" in capsys.readouterr().err


def test_delete_asks_first_and_deletes_nothing_without_an_answer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "m.sqlite3"
    with background_server(db) as info:
        _log_run(info.url, "r", 3)
    assert main(["runs", "delete", "ws/p/r", "--db", str(db)]) == 2  # stdin is no terminal
    assert "pass --yes" in capsys.readouterr().err
    assert _rows(str(db))[0] == 1


def test_a_sqlite_file_gives_the_space_back_with_compact(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    db = tmp_path / "big.sqlite3"
    with background_server(db) as info:
        _log_run(info.url, "small", 10)
        _log_run(info.url, "big", 200_000)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    assert main(["runs", "delete", "ws/p/big", "--yes", "--db", str(db)]) == 0
    conn = sqlite3.connect(db)
    free_pages = conn.execute("PRAGMA freelist_count").fetchone()[0]
    conn.close()
    assert free_pages > 0  # freed, reused for new points, not yet given back
    assert main(["runs", "delete", "ws/p/small", "--yes", "--compact", "--db", str(db)]) == 0
    assert "compacted the database file (VACUUM)" in capsys.readouterr().out
    assert db.stat().st_size < size / 10


def test_rename_keeps_the_data_and_refuses_a_taken_name(db_target: str,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    with background_server(db_target) as info:
        _log_run(info.url, "a", 7)
        _log_run(info.url, "b", 1)
        assert main(["runs", "rename", "ws/p/a", "b", "--url", info.url]) == 1
        assert "already has a run 'b'" in capsys.readouterr().err
        assert main(["runs", "rename", "ws/p/a", "renamed", "--db", db_target]) == 0
        assert capsys.readouterr().out.strip() == "renamed ws/p/a to ws/p/renamed"
        detail = httpx.get(f"{info.url}/api/runs/ws/p/renamed").json()
        assert detail["attributes"]["config/lr"]["value"] == 0.1
        assert {s["metric_name"]: s["point_count"] for s in detail["series"]} == \
            {"loss": 7, "acc": 1}


@pytest.mark.parametrize("action", ["delete", "rename"])
def test_a_client_still_logging_to_a_gone_run_is_refused_and_counts_it(
        db_target: str, action: str, loguru_messages: list[str]) -> None:
    with background_server(db_target) as info:
        run = metrana.session(workspace_name="ws", project_name="p", run_name="r",
                              ingestion_url=info.url)
        run.log("loss", 1.0)
        run.flush()
        body = {"workspace": "ws", "project": "p", "run": "r"}
        route, extra = (("delete_run", {}) if action == "delete"
                        else ("rename_run", {"new_name": "r2"}))
        assert httpx.post(f"{info.url}/api/manage/{route}", json={**body, **extra}
                          ).status_code == 200
        for i in range(3):
            run.log("loss", float(i))
        metrics = run.close()
    assert (metrics.sent, metrics.rejected) == (1, 3)
    said = "\n".join(loguru_messages)
    assert "HTTP 410" in said
    assert ("ws/p/r was deleted at" if action == "delete" else
            "ws/p/r was renamed to 'r2' at") in said


def test_tags_and_notes_edited_through_the_route(tmp_path: Path) -> None:
    """The dashboard's edit: JSON only (the request guard), with the server's key when it has
    one (as delete and rename); bad tags are refused naming what is wrong."""
    with background_server(tmp_path / "t.sqlite3", api_key="sekret") as info:
        _log_run(info.url, "r", 1, api_key="sekret", tags=["a"])
        url = f"{info.url}/api/manage/edit_run"
        body = {"workspace": "ws", "project": "p", "run": "r", "tags": ["b", " c ", "b"],
                "notes": "why this run"}
        assert httpx.post(url, json=body).status_code == 401
        key = {"Authorization": "Bearer sekret"}
        # Deleting and renaming need the key as much (a wrong one too is refused).
        for route, extra in (("delete_run", {}), ("rename_run", {"new_name": "r2"})):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                assert httpx.post(f"{info.url}/api/manage/{route}", headers=headers,
                                  json={**body, **extra}).status_code == 401
        assert httpx.post(url, content=b"{}", headers={**key, "Content-Type": "text/plain"}
                          ).status_code == 415
        assert httpx.post(url, json={**body, "tags": [""]}, headers=key).json()["message"] == \
            "a tag is a non-empty string of at most 200 characters"
        assert httpx.post(url, json=body, headers=key).status_code == 200
        attributes = httpx.get(f"{info.url}/api/runs/ws/p/r", headers=key).json()["attributes"]
        assert attributes["sys/tags"] == {"kind": "string_set", "value": ["b", "c"]}
        assert attributes["sys/notes"] == {"kind": "string", "value": "why this run"}

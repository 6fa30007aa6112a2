"""Keeping runs tidy: delete a run, rename it, edit its tags and notes.

- **Delete** removes the run's rows from every table (its chunks, sessions, series,
  attributes, writer sessions, the run), in one transaction. On PostgreSQL the rows are gone
  at once and autovacuum reuses their space; on SQLite the file keeps its size and reuses the
  freed pages for new points, and :func:`compact` (``VACUUM``) gives them back to the disk.
- **Rename** changes the run's name; its points, series and attributes stay.
- Both remember the old name (:mod:`.retired`): a client still logging to it is refused with
  HTTP 410 and a message saying what became of the run, rather than a bare "does not exist".
- **Tags and notes** are the run attributes ``sys/tags`` (a string set) and ``sys/notes`` (a
  string), the same ones a client sets with ``init(tags=..., notes=...)``.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import Conflict, NotFound
from .database import Database, SQLiteDatabase, Tx
from .read import find_run
from .retired import gone_message, retire, unretire
from .write import set_attribute

__all__ = ["NOTES_PATH", "TAGS_PATH", "compact", "delete_run", "edit_run", "rename_run"]

TAGS_PATH = "sys/tags"
NOTES_PATH = "sys/notes"


def _run_id(tx: Tx, workspace: str, project: str, run_name: str) -> int:
    """The run's id, its row locked (PostgreSQL) until the transaction ends."""
    run = find_run(tx, workspace, project, run_name,
                   lock=" FOR UPDATE OF runs" if tx.dialect == "postgresql" else "")
    if run is None:
        gone = gone_message(tx, workspace, project, run_name)
        raise NotFound(gone or f"run {workspace}/{project}/{run_name} does not exist")
    return run.id


def delete_run(db: Database, workspace: str, project: str, run_name: str) -> dict[str, Any]:
    """Delete a run and everything stored for it; how many series and points it had."""
    now = time.time_ns()
    with db.write() as tx:
        run_id = _run_id(tx, workspace, project, run_name)
        row = tx.one("SELECT COUNT(*), COALESCE(SUM(point_count), 0) FROM series "
                     "WHERE run_id = ?", (run_id,))
        assert row is not None
        series = "SELECT id FROM series WHERE run_id = ?"
        tx.run(f"DELETE FROM chunks WHERE series_id IN ({series})", (run_id,))
        tx.run(f"DELETE FROM sessions WHERE series_id IN ({series})", (run_id,))
        # Histograms and clouds (store/values.py): their points, edges, then their series.
        values = "SELECT id FROM value_series WHERE run_id = ?"
        for table in ("histogram_points", "scatter_points", "histogram_edges"):
            tx.run(f"DELETE FROM {table} WHERE series_id IN ({values})", (run_id,))
        # run_writers too: SQLite does not enforce its ON DELETE CASCADE, and may reuse the id.
        for table in ("series", "value_series", "attributes", "writer_sessions", "run_writers"):
            tx.run(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        tx.run("DELETE FROM runs WHERE id = ?", (run_id,))
        retire(tx, workspace, project, run_name, "deleted", None, now)
    return {"workspace": workspace, "project": project, "run": run_name,
            "series_removed": int(row[0]), "points_removed": int(row[1])}


def rename_run(db: Database, workspace: str, project: str, run_name: str, new_name: str
               ) -> dict[str, Any]:
    """Rename a run; Conflict if the project has a run of the new name."""
    now = time.time_ns()
    with db.write() as tx:
        run_id = _run_id(tx, workspace, project, run_name)
        if new_name == run_name:
            return {"workspace": workspace, "project": project, "run": new_name}
        if find_run(tx, workspace, project, new_name) is not None:
            raise Conflict(f"project {workspace}/{project} already has a run {new_name!r}; "
                           "choose another name (or delete that run first)")
        tx.run("UPDATE runs SET run_name = ? WHERE id = ?", (new_name, run_id))
        unretire(tx, workspace, project, new_name)
        retire(tx, workspace, project, run_name, "renamed", new_name, now)
    return {"workspace": workspace, "project": project, "run": new_name}


def edit_run(db: Database, workspace: str, project: str, run_name: str, *,
             tags: list[str] | None, notes: str | None) -> None:
    """Set a run's tags (the whole set) and/or notes, as its attributes."""
    with db.write() as tx:
        run_id = _run_id(tx, workspace, project, run_name)
        if tags is not None:
            set_attribute(tx, run_id, {"path": TAGS_PATH, "string_set_value": {"values": tags}},
                          db.for_update)
        if notes is not None:
            set_attribute(tx, run_id, {"path": NOTES_PATH, "string_value": notes},
                          db.for_update)


def compact(db: Database) -> bool:
    """Give the space of deleted rows back to the disk: ``VACUUM`` on SQLite (it rewrites the
    file: it takes a while on a large database, and writes wait meanwhile). True if it did
    anything; PostgreSQL's autovacuum does this by itself (False)."""
    if not isinstance(db, SQLiteDatabase):
        return False
    db.vacuum()
    return True

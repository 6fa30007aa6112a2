"""The names of deleted and renamed runs (``retired_runs``), so that a client still logging
to one is refused with HTTP 410 and a message saying what became of the run, rather than a bare
"does not exist". Creating a run of that name again forgets it (:func:`unretire`).

Its own module because both the writes (refusing, unretiring) and the management routes
(retiring) use it.
"""

from __future__ import annotations

import time

from .database import Tx

__all__ = ["gone_message", "retire", "unretire"]


def retire(tx: Tx, workspace: str, project: str, run_name: str, fate: str,
           renamed_to: str | None, now: int) -> None:
    """Remember that the run of this name was deleted or renamed (``fate``), and when."""
    tx.run("INSERT INTO retired_runs (workspace, project, run_name, fate, renamed_to, at_ns) "
           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, project, run_name) DO UPDATE SET "
           "fate = excluded.fate, renamed_to = excluded.renamed_to, at_ns = excluded.at_ns",
           (workspace, project, run_name, fate, renamed_to, now))


def unretire(tx: Tx, workspace: str, project: str, run_name: str) -> None:
    """A run of this name exists (again): forget that an earlier one was deleted or renamed."""
    tx.run("DELETE FROM retired_runs WHERE workspace = ? AND project = ? AND run_name = ?",
           (workspace, project, run_name))


def gone_message(tx: Tx, workspace: str, project: str, run_name: str) -> str | None:
    """"run W/P/R was deleted at …" (or renamed to …), or None if it never was."""
    row = tx.one("SELECT fate, renamed_to, at_ns FROM retired_runs WHERE workspace = ? AND "
                 "project = ? AND run_name = ?", (workspace, project, run_name))
    if row is None:
        return None
    fate, renamed_to, at_ns = row
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(int(at_ns) / 1e9))
    name = f"run {workspace}/{project}/{run_name}"
    if fate == "renamed":
        return f"{name} was renamed to {renamed_to!r} at {when}"
    return f"{name} was deleted at {when}"

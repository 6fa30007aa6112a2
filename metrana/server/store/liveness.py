"""Whether a run is running, finished or crashed: facts per writer session, one rule over them.

A client's logger is one *writer session* (the request's ``session_id``). Every request it
sends (points, attributes, or the empty heartbeat an idle logger sends every 30 s) records
that its session was heard from; ``closeRun`` records that it closed. The state of a run is
derived from those rows when it is read, never stored, so it needs no timer on the server and
stays true for runs written by several processes:

- ``running``: some session is open and was heard from within the heartbeat timeout
  (``metrana serve --heartbeat-timeout``, default 2 minutes);
- ``finished``: no session is running, and the session that started last closed;
- ``crashed``: no session is running, and the session that started last never closed (its
  process was killed, lost power or hung). A crashed run that gets points again (a resume:
  a new session) is ``running`` again.

A run no session wrote to yet (just created, or stored before sessions were recorded) is
judged by its own ``closed_ns`` and its last activity the same way.

A close that no writer session sends (session 0: ``metrana sync`` delivering a run whose last
session recorded its close, or a process closing after it delivered the points that ended
processes left in the spool) ends the run: every session of it heard from until then counts
as closed. Their points were delivered by a replay, which looks to the server like the session
speaking, though its process is gone.
"""

from __future__ import annotations

import json
from typing import Any

from ..ingest import signed_session
from .database import Tx
from .filters import STATUS_PATH, Compiled

__all__ = ["DEFAULT_HEARTBEAT_TIMEOUT_S", "STATES", "STATUS_PATH", "WRITERS_PREFIX", "heard_from",
           "processes", "status_sql", "statuses"]

DEFAULT_HEARTBEAT_TIMEOUT_S = 120.0
# Each process of a job says who it is when it joins: sys/writers/<logger id>/host and
# /session (its writer session, as a decimal string), attributes of the run.
WRITERS_PREFIX = "sys/writers/"
STATES = ("running", "finished", "crashed")


def status_sql(now_ns: int, timeout_s: float) -> Compiled:
    """The state of ``runs`` (the row in the enclosing query) at ``now_ns``, as SQL.

    The times are written into the SQL as integer literals (the server's clock and setting,
    never a client's input): the expression then stands wherever a column can, in filters
    and orderings too, without arguments to thread through them."""
    fresh = int(now_ns - int(timeout_s * 1e9))
    return Compiled(
        "(CASE WHEN EXISTS (SELECT 1 FROM writer_sessions w WHERE w.run_id = runs.id AND "
        f"w.closed_ns IS NULL AND w.last_seen_ns >= {fresh}) THEN 'running' "
        "WHEN EXISTS (SELECT 1 FROM writer_sessions w WHERE w.run_id = runs.id) THEN "
        "(CASE WHEN (SELECT w.closed_ns FROM writer_sessions w WHERE w.run_id = runs.id "
        "ORDER BY w.started_ns DESC, w.session_id DESC LIMIT 1) IS NULL THEN 'crashed' "
        "ELSE 'finished' END) "
        "WHEN runs.closed_ns IS NOT NULL THEN 'finished' "
        "WHEN COALESCE((SELECT MAX(s.last_activity_ns) FROM series s WHERE s.run_id = runs.id), "
        f"0) >= {fresh} OR runs.created_ns >= {fresh} THEN 'running' "
        "ELSE 'crashed' END)")


def statuses(tx: Tx, run_ids: list[int], now_ns: int, timeout_s: float) -> dict[int, str]:
    """The state of each of these runs."""
    if not run_ids:
        return {}
    status = status_sql(now_ns, timeout_s)
    clause, args = tx.among("runs.id", sorted(set(run_ids)))
    return {int(row[0]): str(row[1]) for row in tx.all(
        f"SELECT runs.id, {status.sql} FROM runs WHERE {clause}", args)}


def heard_from(tx: Tx, sessions: list[tuple[int, int, bool]], now_ns: int) -> None:
    """Record that these (run, session, closing) were heard from now, in (run, session)
    order (two servers recording the same rows lock them in one order). Session 0 is no
    writer (an attribute set on its own, as the gRPC run initialization does); its close ends
    every session of the run (see above), after the rows are recorded."""
    closing_of: dict[tuple[int, int], bool] = {}
    ended: set[int] = set()
    for run_id, session_id, closing in sessions:
        if session_id != 0:
            closing_of[(run_id, session_id)] = closing_of.get((run_id, session_id)) or closing
        elif closing:
            ended.add(run_id)
    rows = sorted(closing_of.items())
    tx.many("INSERT INTO writer_sessions (run_id, session_id, started_ns, last_seen_ns, "
            "closed_ns) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, session_id) DO UPDATE SET "
            "last_seen_ns = excluded.last_seen_ns, "
            "closed_ns = COALESCE(writer_sessions.closed_ns, excluded.closed_ns)",
            [(run_id, session_id, now_ns, now_ns, now_ns if closing else None)
             for (run_id, session_id), closing in rows])
    for run_id in sorted(ended):
        tx.run("UPDATE writer_sessions SET closed_ns = ? WHERE run_id = ? AND closed_ns IS NULL "
               "AND last_seen_ns <= ?", (now_ns, run_id, now_ns))


def processes(tx: Tx, run_id: int, attributes: list[tuple[str, str, str]]
              ) -> list[dict[str, Any]]:
    """The processes of a job writing this run (those that said who they are), each with its
    host and its session's start, last request and close (None while open)."""
    said: dict[str, dict[str, str]] = {}
    for path, _, value in attributes:
        if path.startswith(WRITERS_PREFIX):
            writer, _, field = path[len(WRITERS_PREFIX):].rpartition("/")
            if writer and field in ("host", "session"):
                said.setdefault(writer, {})[field] = str(json.loads(value))
    if not said:
        return []
    sessions = {int(r[0]): r for r in tx.all(
        "SELECT session_id, started_ns, last_seen_ns, closed_ns FROM writer_sessions "
        "WHERE run_id = ?", (run_id,))}
    out = []
    for writer, fields in sorted(said.items()):
        try:
            row = sessions.get(signed_session(int(fields.get("session", ""))))
        except ValueError:
            row = None
        out.append({"writer": writer, "host": fields.get("host", ""),
                    "started_ns": None if row is None else int(row[1]),
                    "last_seen_ns": None if row is None else int(row[2]),
                    "closed_ns": None if row is None or row[3] is None else int(row[3])})
    return out

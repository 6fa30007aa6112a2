"""Who a request speaks for (:class:`Principal`) and what a route needs (:class:`Need`).

Every route of the server declares a :class:`Need`: the least role, and where the workspaces
it touches come from (a field of its body, the runs of an ingest request), or none (a listing,
answered with the principal's workspaces only; key management, narrowed by its handler). The
app checks the need before the route runs, over HTTP/JSON and gRPC alike, so a route added to
the tables (``app.ENDPOINTS``, ``read_api.ROUTES``) is covered without a line of its own.

What each role may do (issue 26; the run edits of issue 25 declare the needs below):

========================================  ======  =====  =====
                                           read   write  admin
========================================  ======  =====  =====
read runs, series, points; list runs       yes     yes    yes
create runs, log, edit tags and notes       -      yes    yes
delete and rename runs, manage keys         -       -     yes
========================================  ======  =====  =====

A key outside its workspaces or above its role is refused with :class:`~.errors.Forbidden`
(403), naming the workspace and the key's prefix; a key that is missing, unknown, expired or
revoked never gets this far (:mod:`.auth`: 401).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from .api_keys import ALL_WORKSPACES, Role, label
from .errors import Forbidden, QueryError

__all__ = ["ANONYMOUS", "CREATE_RUNS", "DELETE_RUNS", "EDIT_RUNS", "LIST_RUNS", "LOG",
           "MANAGE_KEYS", "OWNER", "READ_RUNS", "SERVER_KEY", "Need", "Principal",
           "body_workspace", "key_principal"]

SERVER_KEY = "server-key"  # how writes made with METRANA_SERVER_API_KEY are recorded


@attrs.frozen
class Principal:
    """Who a request speaks for: a key's role and workspaces (``*``: all of them).

    ``writer`` is what the store records as the run's ``created_by`` and among its writers
    (a key's prefix; :data:`SERVER_KEY`; None for an open server or the database opened
    directly). ``csrf`` is set when a dashboard session authenticated the request: its writes
    must carry it in the ``X-Metrana-CSRF`` header.
    """

    role: Role
    workspaces: frozenset[str]
    writer: str | None
    shown: str  # how messages name it: "API key mk_1a2b3c4d_…", never more
    csrf: str | None = attrs.field(default=None, repr=False)

    @property
    def everywhere(self) -> bool:
        return ALL_WORKSPACES in self.workspaces

    def covers(self, workspace: str) -> bool:
        return self.everywhere or workspace in self.workspaces

    def visible(self) -> frozenset[str] | None:
        """The workspaces a listing shows this principal (None: every one)."""
        return None if self.everywhere else self.workspaces

    def scope(self) -> str:
        """``write key of 'a', 'b'``: the role and workspaces, for messages."""
        where = "every workspace" if self.everywhere else ", ".join(
            repr(w) for w in sorted(self.workspaces))
        article = "an" if self.role is Role.ADMIN else "a"
        return f"{article} {self.role.word} key of {where}"

    def require(self, need: Need, body: Any) -> None:
        """Forbidden unless this principal may do what ``need`` says with ``body``."""
        if need.workspaces is None:
            if self.role < need.role:
                raise Forbidden(f"{self.shown} may not {need.what}: it is {self.scope()} "
                                f"(that needs role {need.role.word})")
            return
        self.require_in(need, need.workspaces(body))

    def require_in(self, need: Need, workspaces: Iterable[str]) -> None:
        """Forbidden unless this principal has ``need.role`` in each of ``workspaces``."""
        for workspace in workspaces:
            if not self.covers(workspace):
                raise Forbidden(
                    f"{self.shown} may not {need.what} in workspace {workspace!r}: it is "
                    f"{self.scope()}. Use a key of {workspace!r} (an admin of it makes one: "
                    f"metrana keys create --workspace {shlex.quote(workspace)} --role "
                    f"{need.role.word})")
            if self.role < need.role:
                raise Forbidden(
                    f"{self.shown} may not {need.what} in workspace {workspace!r}: it is "
                    f"{self.scope()}, and that needs role {need.role.word}")


def key_principal(prefix: str, role: Role, workspaces: Iterable[str],
                  csrf: str | None = None) -> Principal:
    """The principal of a stored key."""
    return Principal(role, frozenset(workspaces), prefix, f"API key {label(prefix)}", csrf)


# The database opened in this process (metrana runs --db, QueryClient(db=...)): whoever can
# open the file can read it all anyway.
OWNER = Principal(Role.ADMIN, frozenset({ALL_WORKSPACES}), None, "the database's owner")
# A server without any key (on loopback, or started with --allow-anonymous).
ANONYMOUS = Principal(Role.ADMIN, frozenset({ALL_WORKSPACES}), None, "an anonymous request")


# -------------------------------------------------------------- where workspaces come from


def body_workspace(body: Any) -> list[str]:
    """The ``workspace`` field of a JSON body (the read routes, run edits)."""
    value = body.get("workspace") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise QueryError("'workspace' must be a non-empty string")
    return [value]


def _created_workspace(request: Any) -> list[str]:
    """A CreateRunRequest's run's workspace."""
    return [str((request.get("run") or {}).get("workspace", ""))]


def _updated_workspaces(request: Any) -> list[str]:
    """The workspace of every run an UpdateRunsRequest writes to."""
    return sorted({str(update.get("workspace", ""))
                   for update in request.get("run_updates", [])})


@attrs.frozen
class Need:
    """What a route needs: at least ``role`` in every workspace ``workspaces(body)`` names
    (None: in none in particular: a listing, or a route that narrows by itself).
    ``what`` says it in a refusal ("may not <what> in workspace ...")."""

    role: Role
    workspaces: Callable[[Any], Iterable[str]] | None
    what: str


READ_RUNS = Need(Role.READ, body_workspace, "read")
LIST_RUNS = Need(Role.READ, None, "list runs")  # answered with the principal's workspaces only
CREATE_RUNS = Need(Role.WRITE, _created_workspace, "create runs")
LOG = Need(Role.WRITE, _updated_workspaces, "log")
EDIT_RUNS = Need(Role.WRITE, body_workspace, "edit tags and notes")  # issue 25: tags, notes
DELETE_RUNS = Need(Role.ADMIN, body_workspace, "delete or rename runs")  # issue 25: cleanup
MANAGE_KEYS = Need(Role.ADMIN, None, "manage keys")  # narrowed to its workspaces by the route

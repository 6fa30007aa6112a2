"""Changing runs after the fact: one route table, ``POST /api/manage/<route>`` with a JSON body.

The dashboard's delete and rename dialogs and tag and note edits, and ``metrana runs delete`` /
``metrana runs rename``, call these; the CLI with ``--db`` calls :func:`answer` on a store it
opened itself (as :mod:`.read_api` serves both ways in). Like every write, a route needs a JSON
body (:mod:`.guard`). Who may call it (:mod:`.access`, checked by :func:`answer` before the route
runs): deleting and renaming need role ``admin`` in the body's ``workspace``
(:data:`~.access.DELETE_RUNS`), editing tags and notes role ``write``
(:data:`~.access.EDIT_RUNS`).

- ``delete_run`` (``workspace``, ``project``, ``run``, optional ``compact``): the run and
  everything stored for it; answers the series and points removed. ``compact: true`` then
  gives the space back to the disk (SQLite ``VACUUM``: the whole file is rewritten, writes wait).
- ``rename_run`` (… ``new_name``): 409 if the project has a run of that name.
- ``edit_run`` (… ``tags``: the whole set, ``notes``: a string; either may be left out).

A client still logging to a deleted or renamed run is refused with HTTP 410 naming what
happened (:mod:`.store.manage`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .access import DELETE_RUNS, EDIT_RUNS, OWNER, Need, Principal
from .errors import NotFound, QueryError
from .store import Store
from .store.views import dumps

__all__ = ["MAX_NOTES", "MAX_TAG", "MAX_TAGS", "NEEDS", "ROUTES", "answer", "check_tags",
           "need_of"]

MAX_TAGS = 100
MAX_TAG = 200  # characters
MAX_NOTES = 20_000  # characters

Route = Callable[[Store, dict[str, Any]], Any]


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise QueryError(f"{name!r} must be a non-empty string")
    return value


def _names(body: dict[str, Any]) -> tuple[str, str, str]:
    return _text(body, "workspace"), _text(body, "project"), _text(body, "run")


def check_tags(tags: Any) -> list[str]:
    """Tags as stored: non-empty strings of at most :data:`MAX_TAG` characters, without
    surrounding whitespace, each once, at most :data:`MAX_TAGS`; QueryError saying which
    is wrong."""
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise QueryError("'tags' is a list of strings")
    cleaned = list(dict.fromkeys(t.strip() for t in tags))
    if any(not t or len(t) > MAX_TAG for t in cleaned):
        raise QueryError(f"a tag is a non-empty string of at most {MAX_TAG} characters")
    if len(cleaned) > MAX_TAGS:
        raise QueryError(f"a run has at most {MAX_TAGS} tags, got {len(cleaned)}")
    return cleaned


def _delete_run(store: Store, body: dict[str, Any]) -> Any:
    removed = store.delete_run(*_names(body))
    compacted = bool(body.get("compact")) and store.compact()
    return {**removed, "compacted": compacted}


def _rename_run(store: Store, body: dict[str, Any]) -> Any:
    return store.rename_run(*_names(body), _text(body, "new_name"))


def _edit_run(store: Store, body: dict[str, Any]) -> Any:
    tags = None if body.get("tags") is None else check_tags(body["tags"])
    notes = body.get("notes")
    if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_NOTES):
        raise QueryError(f"'notes' is a string of at most {MAX_NOTES:,} characters")
    if tags is None and notes is None:
        raise QueryError("give 'tags' (a list of strings) or 'notes' (a string), or both")
    store.edit_run(*_names(body), tags=tags, notes=notes)
    return {"workspace": body["workspace"], "project": body["project"], "run": body["run"]}


ROUTES: dict[str, Route] = {
    "delete_run": _delete_run,
    "rename_run": _rename_run,
    "edit_run": _edit_run,
}
NEEDS: dict[str, Need] = {"delete_run": DELETE_RUNS, "rename_run": DELETE_RUNS,
                          "edit_run": EDIT_RUNS}


def need_of(name: str) -> Need:
    """What route ``name`` needs of its caller (:mod:`.access`)."""
    return NEEDS[name]


def answer(store: Store, name: str, body: Any, principal: Principal = OWNER) -> bytes:
    """The answer to ``POST /api/manage/<name>`` for ``principal`` (default: the database
    opened in this process, which may change everything), JSON encoded.

    Raises:
        Forbidden: the principal may not do this in the workspace the body names.
    """
    if not isinstance(body, dict):
        raise QueryError("the body is a JSON object")
    route = ROUTES.get(name)
    if route is None:
        raise NotFound(f"no manage route {name!r}; one of {', '.join(ROUTES)}")
    principal.require(need_of(name), body)
    return dumps(route(store, body))

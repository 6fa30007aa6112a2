"""The run attributes a session sends besides its config: tags, notes and the context.

Tags are the run's string set ``sys/tags``: ``init(tags=...)`` and :func:`tag_changes` send a
``stringSetDeltaValue`` (added and removed values), so a resumed run keeps the tags it had
(and those set in the dashboard) and gains the new ones. Notes are the string ``sys/notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._config import Settings
from ._context import capture_context

__all__ = ["NOTES_PATH", "TAGS_PATH", "notes_change", "run_attributes", "tag_changes"]

TAGS_PATH = "sys/tags"
NOTES_PATH = "sys/notes"


def tag_changes(added: Sequence[str] = (), removed: Sequence[str] = ()) -> list[dict[str, Any]]:
    delta: dict[str, Any] = {}
    if added:
        delta["addedValues"] = list(added)
    if removed:
        delta["removedValues"] = list(removed)
    return [{"path": TAGS_PATH, "stringSetDeltaValue": delta}] if delta else []


def notes_change(notes: str) -> list[dict[str, Any]]:
    return [{"path": NOTES_PATH, "stringValue": notes}]


def run_attributes(settings: Settings) -> list[dict[str, Any]]:
    """What ``init()`` sends besides the config: the context (unless turned off), the tags
    and the notes."""
    out: list[dict[str, Any]] = []
    if settings.capture_context:
        key = settings.api_key.get_secret_value() if settings.api_key is not None else None
        out += capture_context([key] if key else [])
    out += tag_changes(settings.tags)
    if settings.notes is not None:
        out += notes_change(settings.notes)
    return out

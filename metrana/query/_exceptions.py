"""What :mod:`metrana.query` raises.

::

    MetranaError
    └── MetranaQueryError          the server could not be reached or failed (status attached)
        └── QueryRequestError      the server refused the question (also ValueError): an
                                   unknown attribute, series or run, a value of the wrong type

Building a filter wrongly (``and`` between conditions, a list as a value) is a ``TypeError``
at the call site, before anything is sent.
"""

from __future__ import annotations

from .._exceptions import MetranaError

__all__ = ["MetranaQueryError", "QueryRequestError"]


class MetranaQueryError(MetranaError):
    """A query failed; ``status`` is the server's HTTP status when it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class QueryRequestError(MetranaQueryError, ValueError):
    """The server refused the question (HTTP 400 or 404); the message says what to fix."""

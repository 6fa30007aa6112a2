"""What the store refuses, each mapped to one HTTP status by the app."""

from __future__ import annotations

__all__ = ["Conflict", "NotFound", "SchemaError", "Unprocessable"]


class NotFound(LookupError):
    """The request names a run, project or series that does not exist (HTTP 404)."""


class Conflict(Exception):
    """The run to create already exists (HTTP 409)."""


class Unprocessable(ValueError):
    """Valid protobuf that this server cannot store faithfully (HTTP 422)."""


class SchemaError(RuntimeError):
    """The database was written by a newer metrana, or is not a metrana database."""

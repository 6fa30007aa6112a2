"""What the server refuses, each mapped to one HTTP status by the app."""

from __future__ import annotations

__all__ = ["Conflict", "DatabaseError", "Forbidden", "Gone", "NotFound", "QueryError",
           "SchemaError", "Throttled", "Unauthenticated", "Unavailable", "Unprocessable"]


class NotFound(LookupError):
    """The request names a run, project or series that does not exist (HTTP 404)."""


class Gone(NotFound):
    """The request names a run that was deleted or renamed (HTTP 410): the message says which,
    and when, so that a client still logging to it knows why its points are refused."""


class QueryError(ValueError):
    """A read the server refuses: a malformed request, or a filter, order or column that
    cannot match anything in the project (HTTP 400); the message says which."""


class Conflict(Exception):
    """The run to create already exists (HTTP 409). ``orchestration_id``: the job that
    created it (its ``sys/orchestration_id`` attribute; "" when none), so a process of that
    job joins it while another job's is told whose run it is."""

    def __init__(self, message: str, orchestration_id: str = "") -> None:
        super().__init__(message)
        self.orchestration_id = orchestration_id


class Unprocessable(ValueError):
    """Valid protobuf that this server cannot store faithfully (HTTP 422)."""


class SchemaError(RuntimeError):
    """The database was written by a newer metrana, or is not a metrana database."""


class DatabaseError(RuntimeError):
    """The database named by ``--db`` cannot be opened: a bad URL, a server that cannot be
    reached, a refused login. The message is one line for the user, without a password."""


class Unavailable(RuntimeError):
    """The database failed this request for a reason that passes (the connection dropped, a
    deadlock or serialization failure was resolved by aborting us): HTTP 503, which clients
    retry. Nothing of the request was stored (its transaction was rolled back)."""


class Unauthenticated(Exception):
    """No key, or one that is unknown, wrong, expired or revoked (HTTP 401, gRPC
    UNAUTHENTICATED); the message names the key by its prefix, never more."""


class Forbidden(Exception):
    """A known key outside its scope: another workspace, or more than its role allows (HTTP
    403, gRPC PERMISSION_DENIED); the message names the workspace and the key's prefix."""


class Throttled(Exception):
    """Too many failed authentications from this address (HTTP 429, gRPC
    RESOURCE_EXHAUSTED): ``retry_after`` seconds until it may try again."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after

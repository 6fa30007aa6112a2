"""Where a reader's questions go: a server over HTTP, or a local database opened directly.

Both answer :func:`metrana.server.read_api.answer`'s routes with the same JSON, so everything
above this module is the same code either way. Its readers: :class:`~metrana.query.QueryClient`,
``metrana runs``/``export`` and ``metrana demo``. It needs neither pandas (the ``query``
extra) nor, over HTTP, the server: the command line reads with the ``server`` extra alone.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Protocol

import httpx
import orjson

from ._auth_refusal import auth_refusal
from ._exceptions import MetranaError

__all__ = ["BINARY_TYPE", "HttpTransport", "LocalTransport", "MetranaQueryError",
           "QueryRequestError", "Transport", "decode_binary"]

TIMEOUT_S = 120.0  # a page of a million points on a loaded machine, with room to spare
# metrana.server.store.views.Binary: the points route's answer with raw columns.
BINARY_TYPE = "application/vnd.metrana.columns"


class MetranaQueryError(MetranaError):
    """A query failed; ``status`` is the server's HTTP status when it answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class QueryRequestError(MetranaQueryError, ValueError):
    """The server refused the question (HTTP 400 or 404); the message says what to fix."""


def decode_binary(body: bytes) -> dict[str, Any]:
    """``<u4 n``, ``n`` bytes of JSON, then raw columns: the JSON, with the columns' bytes as
    ``"buffer"`` (a memoryview: the arrays built on it are views, not copies)."""
    (size,) = struct.unpack_from("<I", body)
    answer: dict[str, Any] = orjson.loads(body[4:4 + size])
    answer["buffer"] = memoryview(body)[4 + size:]
    return answer


class Transport(Protocol):
    def call(self, route: str, body: dict[str, Any]) -> Any:
        """The decoded answer of ``POST /api/query/<route>``."""

    def close(self) -> None: ...


class HttpTransport:
    """``metrana serve`` over HTTP (sync httpx: a notebook has no event loop to share)."""

    def __init__(self, url: str, api_key: str | None, *,
                 transport: httpx.BaseTransport | None = None, timeout: float = TIMEOUT_S,
                 key_advice: str = "api_key= or METRANA_API_KEY") -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url
        self._key_advice = key_advice  # how this reader's user passes a key
        self._client = httpx.Client(base_url=url, headers=headers, timeout=timeout,
                                    transport=transport)

    def __repr__(self) -> str:  # never the key
        return f"HttpTransport({self.url!r})"

    def call(self, route: str, body: dict[str, Any]) -> Any:
        try:
            response = self._client.post(f"/api/query/{route}", content=orjson.dumps(body),
                                         headers={"Content-Type": "application/json"})
        except httpx.HTTPError as exc:
            raise MetranaQueryError(f"cannot reach the metrana server at {self.url}: "
                                    f"{type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            refused = auth_refusal(response, self._key_advice)  # which key and workspace
            if refused is not None:
                raise MetranaQueryError(refused, status=response.status_code)
            raise _error(response.status_code, response.content, self.url)
        if response.headers.get("content-type") == BINARY_TYPE:
            return decode_binary(response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise MetranaQueryError(f"{self.url}/api/query/{route} did not answer with JSON",
                                    status=response.status_code) from exc

    def close(self) -> None:
        self._client.close()


def _error(status: int, content: bytes, url: str) -> MetranaQueryError:
    """The server's own message: it names the attribute, series or run at fault."""
    try:
        message = str(orjson.loads(content)["message"])
    except (ValueError, KeyError, TypeError):
        message = content[:200].decode("utf-8", "replace")
    if status == 404 and "no route" in message:
        message += (f" — is {url} a metrana server with the query routes (metrana 0.3 or "
                    "later)?")
    if status in (400, 404):
        return QueryRequestError(message, status=status)
    return MetranaQueryError(f"HTTP {status}: {message}", status=status)


class LocalTransport:
    """A SQLite file (or PostgreSQL URL) opened in this process: no server needed. Reads only;
    a server may be writing to the same file at the same time (SQLite WAL)."""

    def __init__(self, db: str | Path) -> None:
        try:
            from .server.errors import DatabaseError, SchemaError
            from .server.store import Store
        except ImportError as exc:  # pragma: no cover - numpy and orjson are dependencies
            raise MetranaQueryError(f"opening a database needs the server extra: pip install "
                                    f"'metrana[server]' ({exc})") from None
        if "://" not in str(db) and not Path(db).exists():  # a URL says itself what is wrong
            raise MetranaQueryError(f"no metrana database at {db}")
        try:
            self._store = Store(db)
        except (DatabaseError, SchemaError) as exc:  # one line, without a password
            raise MetranaQueryError(str(exc)) from None
        self.location = self._store.location

    def __repr__(self) -> str:
        return f"LocalTransport({self.location!r})"

    def call(self, route: str, body: dict[str, Any]) -> Any:
        from .server.errors import NotFound, QueryError
        from .server.read_api import Binary, answer

        try:
            result = answer(self._store, route, body)
        except QueryError as exc:
            raise QueryRequestError(str(exc), status=400) from None
        except NotFound as exc:
            raise QueryRequestError(str(exc), status=404) from None
        if isinstance(result, Binary):
            return decode_binary(result.body)
        return orjson.loads(result)

    def close(self) -> None:
        self._store.close()

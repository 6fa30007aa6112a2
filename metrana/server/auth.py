"""The API key check that HTTP/JSON and gRPC share: ``Authorization: Bearer <key>``."""

from __future__ import annotations

import hmac

__all__ = ["key_problem"]


def key_problem(headers: dict[bytes, bytes], api_key: bytes | None) -> str | None:
    """``"missing"`` or ``"invalid"`` when the request may not pass, else None. Says what was
    wrong without ever echoing what was sent (compared in constant time)."""
    if api_key is None:
        return None
    given = headers.get(b"authorization", b"")
    scheme, _, token = given.partition(b" ")
    if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), api_key):
        return None
    return "missing" if not given else "invalid"

"""The dashboard's sign-in: a key exchanged once for a session cookie.

``POST /api/session`` with ``{"key": ...}`` checks the key as any request's, then sets a cookie
holding a random token (32 bytes): ``HttpOnly`` (no script can read it, so a key or token is
never in the page's JavaScript or storage), ``SameSite=Strict`` (no other site's page can make
the browser send it), ``Path=/``, and no ``Expires`` (it ends with the browser session). The
server keeps only a SHA-256 of the token, its key's prefix and an expiry
(:data:`SESSION_TTL_S`): revoking the key ends its sessions at once, and ``DELETE
/api/session`` (the sign-out button) ends one.

A request the cookie authenticates that changes anything (every method but GET and HEAD) must
also carry ``X-Metrana-CSRF``: a digest of the token that the page learns from ``GET
/api/session``. A page of another site can neither read it nor make the browser send it, on top
of what :mod:`.guard` already refuses (foreign ``Origin``, non-JSON bodies).

The cookie's name carries the port the browser used (``metrana_session_8787``): cookies are
per host, not per port, and two servers on one machine must not sign each other out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

__all__ = ["CSRF_HEADER", "SESSION_TTL_S", "binding", "clear_cookie", "cookie_name", "csrf_of",
           "new_token", "set_cookie", "token_from", "token_hash"]

SESSION_TTL_S = 12 * 3600  # a session lasts at most this long, whatever the browser does
CSRF_HEADER = b"x-metrana-csrf"
_PREFIX = "metrana_session_"


def cookie_name(headers: dict[bytes, bytes], server_port: int | None) -> str:
    """The session cookie's name for a request: by the port in its ``Host`` (what the browser
    keys on), else the port it arrived at."""
    host = headers.get(b"host", b"").decode("latin-1").strip()
    tail = host.rpartition("]")[2] if host.startswith("[") else host
    port = tail.rpartition(":")[2] if tail.count(":") == 1 else ""
    if not port.isdigit():
        port = str(server_port or 80)
    return _PREFIX + port


def token_from(headers: dict[bytes, bytes], name: str) -> str | None:
    """The value of cookie ``name`` in the request's ``Cookie`` header, if any."""
    raw = headers.get(b"cookie")
    if not raw:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name and value:
            return value.strip('"')
    return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """What the server keeps of a token (a 256-bit random token needs no slow hash)."""
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_of(token: str) -> str:
    """The CSRF value of a session: derived from its token, so any server behind a load
    balancer can check it, and it does not give the token away."""
    digest = hashlib.sha256(b"metrana csrf\0" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def binding(server_key: bytes, hashed_token: str) -> str:
    """Ties a session signed in with ``METRANA_SERVER_API_KEY`` (no database row) to that key:
    a server restarted with another key does not accept the old key's sessions."""
    return hmac.new(server_key, hashed_token.encode(), hashlib.sha256).hexdigest()


def set_cookie(name: str, token: str, secure: bool) -> bytes:
    flags = "; Secure" if secure else ""
    return f"{name}={token}; Path=/; HttpOnly; SameSite=Strict{flags}".encode()


def clear_cookie(name: str, secure: bool) -> bytes:
    flags = "; Secure" if secure else ""
    return f"{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{flags}".encode()

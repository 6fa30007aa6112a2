"""Who sent a request: the check HTTP/JSON and gRPC share, before any route runs.

A request is authenticated by, in this order:

1. ``Authorization: Bearer <key>``: the server's own key (``METRANA_SERVER_API_KEY``: an
   ``admin`` key of every workspace, the single-user shortcut), or a key made by ``metrana
   keys create`` (``mk_<prefix>_<secret>``, looked up by prefix and checked against its hash,
   refused when revoked or expired);
2. the dashboard's session cookie (:mod:`.sessions`), while its key is still valid;
3. nothing, on a server that has no key at all (no server key, no key ever made in its
   database): it is open, as a single user's loopback server always was. Making the first
   key closes it within :data:`KEYS_RECHECK_S`, without a restart.

Anything else is :class:`~.errors.Unauthenticated` (401), naming the key by its prefix only.
Each failed key counts against the sender's address (:class:`.throttle.FailureLimiter`); past
the limit its keys are refused unseen with :class:`~.errors.Throttled` (429). Failures are
logged with the prefix, never a secret.

Checking a key against its scrypt hash costs ~70 ms, once per key and process: the
authenticator remembers a SHA-256 of each key it verified together with the stored hash it
verified it against, and still reads the key's row on every request, so a revocation (by any
server or ``metrana keys revoke --db``) is seen by the next request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from datetime import datetime, timezone

from loguru import logger

from .access import ANONYMOUS, SERVER_KEY, Principal, key_principal
from .api_keys import ALL_WORKSPACES, KeyRecord, Role, key_prefix, label, verify_key
from .errors import QueryError, Throttled, Unauthenticated
from .sessions import (
    SESSION_TTL_S,
    binding,
    cookie_name,
    csrf_of,
    new_token,
    token_from,
    token_hash,
)
from .store import Store
from .throttle import FailureLimiter

__all__ = ["KEYS_RECHECK_S", "SERVER", "Authenticator"]

KEYS_RECHECK_S = 1.0  # an open server looks this often whether a first key was made
TOUCH_EVERY_NS = 60 * 10**9  # a key's "last used" is written at most this often per server
SERVER = Principal(Role.ADMIN, frozenset({ALL_WORKSPACES}), SERVER_KEY,
                   "the server's key (METRANA_SERVER_API_KEY)")
_MISSING = "missing API key: this server needs one, sent as 'Authorization: Bearer <api key>'"
_ENDED = ("your dashboard session has ended (signed out, expired, or its key was revoked): "
          "sign in again")


def _bearer(value: bytes) -> str | None:
    """The key of ``Bearer <key>`` (as UTF-8: a server key may have any characters)."""
    scheme, _, token = value.decode("utf-8", "replace").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _date(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


class Authenticator:
    """The keys of one server: its own (``server_key``) and those in its database.

    Methods that may read the database (:meth:`authenticate`, :meth:`check_key`,
    :meth:`sign_in`) are synchronous and run in worker threads; :meth:`quick` answers in the
    event loop when no read is needed (an open server, the server's own key).
    """

    def __init__(self, store: Store, server_key: str | None = None, *,
                 limiter: FailureLimiter | None = None) -> None:
        self._store = store
        self._server_key = server_key.encode() if server_key else None
        self.limiter = limiter if limiter is not None else FailureLimiter()
        self._keys_seen = False
        self._keys_checked = -math.inf
        self._verified: dict[str, tuple[str, bytes]] = {}  # prefix -> (stored hash, sha256)
        self._touched: dict[str, int] = {}

    def __repr__(self) -> str:  # never a key, nor a digest of one
        return (f"Authenticator(server_key={'set' if self._server_key else 'none'}, "
                f"{self.limiter!r})")

    def is_open(self) -> bool:
        """Whether requests need no key: no server key, and no key made in the database (read
        at most every :data:`KEYS_RECHECK_S`; once one exists, the answer stays no)."""
        if self._server_key is not None or self._keys_seen:
            return False
        now = time.monotonic()
        if now - self._keys_checked >= KEYS_RECHECK_S:
            self._keys_seen = self._store.any_key()
            self._keys_checked = now
        return not self._keys_seen

    def quick(self, headers: dict[bytes, bytes], address: str) -> Principal | None:
        """The principal when no database read is needed, else None (then
        :meth:`authenticate`, in a worker thread)."""
        if (self._server_key is None and not self._keys_seen
                and time.monotonic() - self._keys_checked < KEYS_RECHECK_S):
            return ANONYMOUS
        given = headers.get(b"authorization")
        key = _bearer(given) if given else None
        if key is not None and self._server_key is not None \
                and hmac.compare_digest(key.encode(), self._server_key):
            self._throttle(address)
            return SERVER
        return None

    def authenticate(self, headers: dict[bytes, bytes], address: str,
                     server_port: int | None = None) -> Principal:
        """Who the request speaks for. Raises Unauthenticated (401) or Throttled (429)."""
        if self.is_open():
            return ANONYMOUS
        given = headers.get(b"authorization")
        if given:
            return self.check_key(_bearer(given), address)
        token = token_from(headers, cookie_name(headers, server_port))
        if token is not None:
            return self._session(token)
        raise Unauthenticated(_MISSING)

    def check_key(self, key: str | None, address: str) -> Principal:
        """The principal of an API key (the server's, or one made by ``metrana keys``)."""
        self._throttle(address)
        if key is None:
            self._failed(address, "an Authorization header", "not 'Bearer <api key>'")
            raise Unauthenticated("invalid Authorization header: send 'Authorization: Bearer "
                                  "<api key>'")
        if self._server_key is not None and hmac.compare_digest(key.encode(), self._server_key):
            return SERVER
        prefix = key_prefix(key)
        if prefix is None:
            self._failed(address, "a key", "not the server's key nor one of its keys")
            raise Unauthenticated("invalid API key: it is "
                                  + ("neither the server's key (METRANA_SERVER_API_KEY) nor "
                                     if self._server_key else "not ")
                                  + "a key made by 'metrana keys create' (mk_<prefix>_<secret>)")
        shown = f"API key {label(prefix)}"
        record = self._store.find_key(prefix)
        if record is None:
            self._failed(address, shown, "no such key")
            raise Unauthenticated(f"{shown} is not a key of this server ('metrana keys list' "
                                  "shows its keys)")
        if not self._verify(key, record):
            self._failed(address, shown, "wrong secret")
            raise Unauthenticated(f"invalid API key: {shown} is a key of this server, but not "
                                  "with this secret")
        now = time.time_ns()
        problem = record.problem(now)
        if problem is not None:
            when = record.revoked_ns if problem == "revoked" else record.expires_ns
            assert when is not None
            self._failed(address, shown, problem)
            raise Unauthenticated(f"{shown} {'was revoked' if problem == 'revoked' else 'expired'}"
                                  f" on {_date(when)}: use another key (an admin makes one with "
                                  "'metrana keys create')")
        self._touch(prefix, now)
        return key_principal(prefix, record.role, record.workspaces)

    def sign_in(self, key: str, address: str) -> tuple[str, Principal]:
        """A new dashboard session for ``key``: its token (the cookie's value) and principal.

        Raises:
            QueryError: the server needs no key (it has none).
        """
        if self.is_open():
            raise QueryError("this server has no keys, so there is nothing to sign in to")
        principal = self.check_key(key, address)
        token = new_token()
        hashed = token_hash(token)
        assert principal.writer is not None
        bound = binding(self._server_key, hashed) if principal.writer == SERVER_KEY \
            and self._server_key is not None else None
        self._store.add_session(hashed, principal.writer, bound,
                                time.time_ns() + SESSION_TTL_S * 10**9)
        return token, Principal(principal.role, principal.workspaces, principal.writer,
                                principal.shown, csrf_of(token))

    def sign_out(self, headers: dict[bytes, bytes], server_port: int | None) -> None:
        token = token_from(headers, cookie_name(headers, server_port))
        if token is not None:
            self._store.end_session(token_hash(token))

    # ------------------------------------------------------------------ internals

    def _session(self, token: str) -> Principal:
        hashed = token_hash(token)
        found = self._store.find_session(hashed)
        if found is None:
            raise Unauthenticated(_ENDED)
        prefix, bound, record = found
        csrf = csrf_of(token)
        if prefix == SERVER_KEY:
            if self._server_key is None or bound is None \
                    or not hmac.compare_digest(binding(self._server_key, hashed), bound):
                raise Unauthenticated(_ENDED)
            return Principal(SERVER.role, SERVER.workspaces, SERVER.writer, SERVER.shown, csrf)
        now = time.time_ns()
        if record is None or record.problem(now) is not None:
            raise Unauthenticated(_ENDED)
        self._touch(prefix, now)
        return key_principal(prefix, record.role, record.workspaces, csrf)

    def _verify(self, key: str, record: KeyRecord) -> bool:
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._verified.get(record.prefix)
        if cached is not None and cached[0] == record.secret_hash:
            return hmac.compare_digest(cached[1], digest)
        if not verify_key(key, record.secret_hash):
            return False
        self._verified[record.prefix] = (record.secret_hash, digest)
        return True

    def _touch(self, prefix: str, now: int) -> None:
        last = self._touched.get(prefix)
        if last is None or now - last >= TOUCH_EVERY_NS:
            self._touched[prefix] = now
            self._store.touch_key(prefix, now)

    def _throttle(self, address: str) -> None:
        wait = self.limiter.retry_after(address)
        if wait is not None:
            raise Throttled(f"too many failed authentications from {address}: try again in "
                            f"{wait} s", wait)

    def _failed(self, address: str, what: str, why: str) -> None:
        reached = self.limiter.failed(address)
        logger.warning("metrana serve: refused {} from {}: {}", what, address, why)
        if reached:
            logger.warning("metrana serve: {} failed authentications from {} within {:g} s: "
                           "its keys are refused unseen (HTTP 429) for a while",
                           self.limiter.limit, address, self.limiter.window)

"""Managing keys: create, list, revoke — for ``metrana keys`` on a database opened directly
(the :data:`~.access.OWNER`: how the first admin key is made, no server needed) and for the
server's ``/api/keys/…`` routes (an ``admin`` key).

An admin key manages the keys of its own workspaces only: it creates keys whose workspaces it
covers (``*`` only if it is ``*`` itself), lists the keys all of whose workspaces it covers,
and revokes those. A new key is returned once, whole; after that only its prefix exists.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .access import ANONYMOUS, Principal
from .api_keys import ALL_WORKSPACES, KeyRecord, Role, hash_key, label, new_key
from .errors import Forbidden, NotFound, QueryError
from .store import Store

__all__ = ["MAX_NAME", "create_key", "key_json", "list_keys", "normalize_prefix", "revoke_key"]

MAX_NAME = 200
_PREFIX = re.compile(r"(?:mk_)?([0-9a-f]{8})(?:_.*)?", re.DOTALL)


def normalize_prefix(text: str) -> str:
    """A key's prefix from what a user may paste: ``1a2b3c4d``, ``mk_1a2b3c4d``, the listed
    ``mk_1a2b3c4d_…``, or the whole key. QueryError otherwise."""
    match = _PREFIX.fullmatch(text.strip())
    if match is None:
        raise QueryError(f"{text[:20]!r} is not a key prefix: give the 8 characters after "
                         "'mk_' that 'metrana keys list' shows")
    return match.group(1)


def _workspaces(values: Any) -> tuple[str, ...]:
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values \
            or not all(isinstance(v, str) and v.strip() for v in values):
        raise QueryError("'workspaces' is a non-empty list of workspace names ('*': every "
                         "workspace)")
    names = sorted({v.strip() for v in values})
    return (ALL_WORKSPACES,) if ALL_WORKSPACES in names else tuple(names)


def _keyed(principal: Principal) -> None:
    """An open server's anonymous callers manage no keys: the first key is made on the
    database itself, by whoever may open it (else anyone who reaches an open server could
    make themselves its owner)."""
    if principal is ANONYMOUS:
        raise Forbidden("this server has no keys yet: make the first one on its database "
                        "(metrana keys create --db <the server's database> --workspace '*' "
                        "--role admin), then manage keys here with it")


def _manages(principal: Principal, workspaces: tuple[str, ...]) -> bool:
    if ALL_WORKSPACES in workspaces:
        return principal.everywhere
    return all(principal.covers(w) for w in workspaces)


def create_key(store: Store, principal: Principal, *, workspaces: Any, role: Any,
               name: Any = "", expires_s: Any = None) -> tuple[str, KeyRecord]:
    """A new key of ``role`` for ``workspaces``: the key (shown once) and its record. The
    arguments may come from a request's JSON: each is checked (QueryError saying what is
    wrong)."""
    _keyed(principal)
    scope = _workspaces(workspaces)
    try:
        wanted = Role.named(role) if isinstance(role, str) else None
    except ValueError as exc:
        raise QueryError(str(exc)) from None
    if wanted is None:
        raise QueryError("'role' is one of read, write, admin")
    if not isinstance(name, str) or len(name) > MAX_NAME:
        raise QueryError(f"'name' is a label of at most {MAX_NAME} characters")
    if expires_s is not None and (isinstance(expires_s, bool) or not isinstance(expires_s, int)
                                  or expires_s <= 0):
        raise QueryError("'expires_s' is a positive number of seconds, or null for never")
    if not _manages(principal, scope):
        outside = "every workspace ('*')" if ALL_WORKSPACES in scope else ", ".join(
            repr(w) for w in scope if not principal.covers(w))
        raise Forbidden(f"{principal.shown} may not manage keys of {outside}: it is "
                        f"{principal.scope()}")
    now = time.time_ns()
    while True:  # a prefix drawn twice (1 in 2**32 per key) is drawn again
        key, prefix = new_key()
        record = KeyRecord(prefix, hash_key(key), name.strip(), wanted, scope, now,
                           None if expires_s is None else now + expires_s * 10**9, None, None)
        if store.add_key(record):
            return key, record


def list_keys(store: Store, principal: Principal) -> list[KeyRecord]:
    """The keys ``principal`` manages (every key, for the owner), oldest first."""
    _keyed(principal)
    return [r for r in store.key_records() if _manages(principal, r.workspaces)]


def revoke_key(store: Store, principal: Principal, prefix: str) -> KeyRecord:
    """Revoke the key (its requests are refused from now on, by every server); the key as it
    is now. Revoking a revoked key changes nothing."""
    _keyed(principal)
    prefix = normalize_prefix(prefix)
    record = store.find_key(prefix)
    if record is None or not _manages(principal, record.workspaces):
        # A key outside the caller's workspaces is not shown to exist either.
        raise NotFound(f"no key {label(prefix)} among the keys {principal.shown} manages "
                       "('metrana keys list' shows them)")
    if record.revoked_ns is not None:
        return record
    revoked = store.revoke_key(prefix)
    assert revoked is not None
    return revoked


def key_json(record: KeyRecord, now: int) -> dict[str, Any]:
    """A key as listings show it: everything but its secret (and its hash)."""
    return {"prefix": record.prefix, "name": record.name, "role": record.role.word,
            "workspaces": list(record.workspaces), "created_ns": record.created_ns,
            "expires_ns": record.expires_ns, "last_used_ns": record.last_used_ns,
            "revoked_ns": record.revoked_ns, "status": record.problem(now) or "active"}

"""Who may do what, as stored: API keys, the dashboard's sign-in sessions, and the keys that
wrote to each run. Functions of a transaction (:class:`.database.Tx`), as :mod:`.read` and
:mod:`.write` are; :class:`~metrana.server.store.Store` wraps each use in one.

Nothing secret is stored: a key is its prefix and a scrypt hash (:mod:`..api_keys`), a session
is a SHA-256 of its token (the token is 32 random bytes, so a fast hash is enough: it cannot be
guessed, only stolen, and the table does not give it away).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..api_keys import KeyRecord, Role
from .database import Tx

__all__ = ["CREATED_BY", "KEY_COLUMNS", "add_key", "add_session", "any_key", "end_session", "find_key",
           "find_session", "key_records", "purge_sessions", "record_writer", "revoke_key",
           "touch_key", "writers_of"]

# The run attribute naming the key that created the run: set by the server, refused from clients.
CREATED_BY = "created_by"
KEY_COLUMNS = ("prefix, secret_hash, name, role, workspaces, created_ns, expires_ns, "
               "last_used_ns, revoked_ns")


def _record(row: tuple[Any, ...]) -> KeyRecord:
    return KeyRecord(str(row[0]), str(row[1]), str(row[2]), Role.named(str(row[3])),
                     tuple(json.loads(row[4])), int(row[5]),
                     *(None if v is None else int(v) for v in row[6:9]))


# ------------------------------------------------------------------------------ keys


def add_key(tx: Tx, key: KeyRecord) -> bool:
    """Store a new key; False if its prefix is taken (the caller draws another)."""
    return bool(tx.run(
        f"INSERT INTO api_keys ({KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (key.prefix, key.secret_hash, key.name, key.role.word, json.dumps(list(key.workspaces)),
         key.created_ns, key.expires_ns, key.last_used_ns, key.revoked_ns)))


def find_key(tx: Tx, prefix: str) -> KeyRecord | None:
    row = tx.one(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE prefix = ?", (prefix,))
    return None if row is None else _record(row)


def key_records(tx: Tx) -> list[KeyRecord]:
    """Every key, revoked ones too, oldest first."""
    return [_record(row) for row in tx.all(
        f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ns, prefix")]


def any_key(tx: Tx) -> bool:
    """Whether a key was ever made here (a revoked one counts: the server stays closed)."""
    return tx.one("SELECT 1 FROM api_keys LIMIT 1") is not None


def revoke_key(tx: Tx, prefix: str, now: int) -> None:
    """Mark the key revoked (kept, so listings say when) and end its dashboard sessions."""
    tx.run("UPDATE api_keys SET revoked_ns = ? WHERE prefix = ? AND revoked_ns IS NULL",
           (now, prefix))
    tx.run("DELETE FROM web_sessions WHERE key_prefix = ?", (prefix,))


def touch_key(tx: Tx, prefix: str, now: int) -> None:
    tx.run("UPDATE api_keys SET last_used_ns = ? WHERE prefix = ? AND "
           "(last_used_ns IS NULL OR last_used_ns < ?)", (now, prefix, now))


# -------------------------------------------------------------------------- sessions


def add_session(tx: Tx, token_hash: str, prefix: str, binding: str | None, now: int,
                expires_ns: int) -> None:
    tx.run("INSERT INTO web_sessions (token_hash, key_prefix, key_binding, created_ns, "
           "expires_ns) VALUES (?, ?, ?, ?, ?)", (token_hash, prefix, binding, now, expires_ns))


def find_session(tx: Tx, token_hash: str, now: int) -> tuple[str, str | None, int] | None:
    """A live session's key prefix, binding and expiry; None when unknown or expired."""
    row = tx.one("SELECT key_prefix, key_binding, expires_ns FROM web_sessions "
                 "WHERE token_hash = ? AND expires_ns > ?", (token_hash, now))
    return None if row is None else (str(row[0]), row[1], int(row[2]))


def end_session(tx: Tx, token_hash: str) -> None:
    tx.run("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))


def purge_sessions(tx: Tx, now: int) -> None:
    """Forget expired sessions (done when a new one starts: the table stays small)."""
    tx.run("DELETE FROM web_sessions WHERE expires_ns <= ?", (now,))


# --------------------------------------------------------------------------- writers


def record_writer(tx: Tx, run_ids: Iterable[int], prefix: str, now: int) -> None:
    """The key ``prefix`` wrote to these runs now. A writer's ``last_ns`` moves at most once a
    minute, so a busy run does not rewrite its row on every request (nor, on PostgreSQL, hold
    its lock longer than the statement)."""
    tx.many("INSERT INTO run_writers (run_id, key_prefix, first_ns, last_ns) VALUES "
            "(?, ?, ?, ?) ON CONFLICT (run_id, key_prefix) DO UPDATE SET last_ns = "
            "excluded.last_ns WHERE run_writers.last_ns < excluded.last_ns - 60000000000",
            [(run_id, prefix, now, now) for run_id in sorted(set(run_ids))])


def writers_of(tx: Tx, run_id: int) -> list[tuple[str, int, int]]:
    """The keys that wrote to the run: (prefix, first, last write), first writer first."""
    return [(str(r[0]), int(r[1]), int(r[2])) for r in tx.all(
        "SELECT key_prefix, first_ns, last_ns FROM run_writers WHERE run_id = ? "
        "ORDER BY first_ns, key_prefix", (run_id,))]

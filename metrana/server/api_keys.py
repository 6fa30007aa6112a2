"""API keys as metrana makes them: ``mk_<prefix>_<secret>``, their hash, roles and lifetimes.

A key is shown once, when it is made; the database keeps only its prefix (which names it in
listings, logs and refusals) and a scrypt hash of the whole key (``hashlib.scrypt``: memory-hard,
salted, in the standard library). Checking a key is a comparison in constant time
(:func:`hmac.compare_digest`). The secret is 32 random bytes, so the hash guards against a
stolen database, not against guessing: nobody guesses 256 bits.

scrypt costs ~70 ms a check on purpose, which a server cannot pay on every request; it pays it
once per key and process (:class:`~.auth.Authenticator` remembers a fast digest of a key it
verified against the stored hash it verified it with).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

import attrs

__all__ = ["ALL_WORKSPACES", "KEY_SHAPE", "KeyRecord", "Role", "hash_key", "key_prefix",
           "label", "new_key", "parse_duration", "verify_key"]

ALL_WORKSPACES = "*"  # a key of every workspace: the server owner's (with role admin)
_PREFIX_CHARS = 8  # hex: 2**32 names, checked unique when a key is stored
_SECRET_BYTES = 32
_KEY = re.compile(r"mk_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
KEY_SHAPE = "mk_<8 hex characters>_<43 characters>"
# scrypt's cost: 16 MiB and ~70 ms a hash on a 2-core VM (N=2**15 passes OpenSSL's default
# memory limit). Stored with each hash, so it can be raised later without breaking old keys.
_N, _R, _P = 2**14, 8, 1


class Role(enum.IntEnum):
    """What a key may do in its workspaces; each role may do everything the one before may."""

    READ = 1  # read runs, series and points: the dashboard, metrana.query, runs/export
    WRITE = 2  # also create runs, log into them, edit their tags and notes
    ADMIN = 3  # also delete and rename runs, and manage keys of its workspaces

    @property
    def word(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, word: str) -> Role:
        """The role spelt ``read``, ``write`` or ``admin``; ValueError naming them otherwise."""
        try:
            return cls[word.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {word!r}: one of read, write, admin") from None


@attrs.frozen(repr=False)
class KeyRecord:
    """A stored key: everything but its secret (the store holds only ``secret_hash``)."""

    prefix: str
    secret_hash: str
    name: str
    role: Role
    workspaces: tuple[str, ...]
    created_ns: int
    expires_ns: int | None
    last_used_ns: int | None
    revoked_ns: int | None

    def __repr__(self) -> str:  # never the hash either: it is what an attacker would crack
        return (f"KeyRecord({label(self.prefix)}, role={self.role.word}, "
                f"workspaces={list(self.workspaces)!r})")

    def problem(self, now_ns: int) -> str | None:
        """Why this key may not be used now (``revoked``, ``expired``), else None."""
        if self.revoked_ns is not None:
            return "revoked"
        if self.expires_ns is not None and self.expires_ns <= now_ns:
            return "expired"
        return None


def label(prefix: str) -> str:
    """How a key is named wherever it is shown: its prefix, never its secret."""
    return f"mk_{prefix}_…"


def new_key() -> tuple[str, str]:
    """A new key and its prefix. The key is printed once and then only its hash is kept."""
    prefix = secrets.token_hex(_PREFIX_CHARS // 2)
    return f"mk_{prefix}_{secrets.token_urlsafe(_SECRET_BYTES)}", prefix


def key_prefix(text: str) -> str | None:
    """The prefix of a metrana key (``mk_<prefix>_<secret>``), or None for anything else."""
    match = _KEY.fullmatch(text)
    return match.group(1) if match else None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(key: bytes, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(key, salt=salt, n=n, r=r, p=p, dklen=32, maxmem=64 * 2**20)


def hash_key(key: str) -> str:
    """``scrypt$N$r$p$salt$digest`` of the whole key (its prefix included), salted."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(key.encode(), salt, _N, _R, _P)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, stored: str) -> bool:
    """Whether ``key`` is the one ``stored`` (:func:`hash_key`) was made of; constant time."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(key.encode(), _unb64(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, _unb64(digest))
    except ValueError:  # a malformed hash verifies nothing
        return False


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_DURATION = re.compile(r"(\d+)\s*([smhdwy])")


def parse_duration(text: str) -> int:
    """``90d``, ``12h``, ``30m``, ``2w``, ``1y``, ``45s`` as seconds; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration: a positive number and a unit, such as "
                         "90d, 12h, 30m, 2w or 1y")
    return int(match.group(1)) * _UNITS[match.group(2)]

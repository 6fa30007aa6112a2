"""Keys as made and checked (``api_keys``), and failed authentications counted per address
(``throttle``), on a clock the test moves."""

from __future__ import annotations

import pytest

from metrana.server import throttle
from metrana.server.api_keys import (
    KeyRecord,
    Role,
    hash_key,
    key_prefix,
    new_key,
    parse_duration,
    verify_key,
)
from metrana.server.throttle import FailureLimiter


def test_a_key_is_its_prefix_and_32_random_bytes_and_only_its_hash_verifies_it() -> None:
    key, prefix = new_key()
    assert key.startswith(f"mk_{prefix}_") and len(key) == 3 + 8 + 1 + 43
    assert key_prefix(key) == prefix
    assert new_key()[0] != key
    stored = hash_key(key)
    assert key not in stored and key.split("_", 2)[2] not in stored
    assert stored != hash_key(key)  # salted
    assert verify_key(key, stored)
    assert not verify_key(key[:-1] + ("A" if key[-1] != "A" else "B"), stored)
    assert not verify_key(key, "scrypt$broken") and not verify_key(key, "md5$1$2$3$4$5")
    for text in ("mk_1A2B3C4D_" + "a" * 43, "mk_1a2b3c4d_" + "a" * 42, "sk_1a2b3c4d_" + "a" * 43,
                 "", "mk__"):
        assert key_prefix(text) is None, text


def test_a_record_never_shows_its_hash_and_says_why_it_may_not_be_used() -> None:
    record = KeyRecord("1a2b3c4d", "scrypt$16384$8$1$salt$digest", "ci", Role.WRITE, ("a",),
                       created_ns=0, expires_ns=100, last_used_ns=None, revoked_ns=None)
    assert "digest" not in repr(record) and "mk_1a2b3c4d_…" in repr(record)
    assert (record.problem(99), record.problem(100)) == (None, "expired")
    revoked = KeyRecord("1a2b3c4d", "h", "", Role.READ, ("a",), 0, None, None, 5)
    assert revoked.problem(1) == "revoked"


def test_roles_and_durations_from_words() -> None:
    assert Role.named(" Admin ") is Role.ADMIN and Role.READ < Role.WRITE < Role.ADMIN
    with pytest.raises(ValueError, match="one of read, write, admin"):
        Role.named("owner")
    assert [parse_duration(t) for t in ("90d", "12h", "30m", "2w", "1y", "45s")] == [
        90 * 86400, 12 * 3600, 1800, 14 * 86400, 365 * 86400, 45]
    for text in ("soon", "0d", "-1d", "1.5d", "d"):
        with pytest.raises(ValueError, match="is not a duration"):
            parse_duration(text)


def test_failures_are_limited_per_address_in_a_sliding_window() -> None:
    now = [0.0]
    limiter = FailureLimiter(3, window=60, clock=lambda: now[0])
    reached = []
    for when in (0, 10, 20):
        now[0] = when
        reached.append(limiter.failed("a"))
    assert reached == [False, False, True]
    assert limiter.retry_after("a") == 40 and limiter.retry_after("b") is None
    now[0] = 59
    assert limiter.retry_after("a") == 1
    now[0] = 60.5  # the first failure has left the window
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") == 10  # until the one at 10 leaves


def test_the_addresses_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throttle, "MAX_ADDRESSES", 5)
    limiter = FailureLimiter(1, window=60, clock=lambda: 0.0)
    for i in range(20):
        limiter.failed(f"10.0.0.{i}")
    assert len(limiter._failures) == 5
    assert limiter.retry_after("10.0.0.19") == 60 and limiter.retry_after("10.0.0.0") is None

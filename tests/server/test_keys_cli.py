"""``metrana keys create|list|revoke``, as a user runs it: on the database directly (how the
first admin key is made, before any server) and through a server with an admin key; and what
a server does with the keys made so."""

from __future__ import annotations

import os
import re
import sqlite3

import httpx
import pytest

from metrana.server.api_keys import KEY_SHAPE
from tests.helpers import wait_until
from tests.server.test_cli import metrana, one_line
from tests.support import start_serve, stop_serve

KEY = re.compile(r"mk_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def created(*args: str) -> tuple[str, str]:
    """``metrana keys create ARGS``: the key it printed (alone on stdout) and its prefix."""
    done = metrana("keys", "create", *args)
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip()
    assert KEY.fullmatch(key), (done.stdout, KEY_SHAPE)
    assert key not in done.stderr and "only time it is shown" in done.stderr
    return key, key.split("_")[1]


def test_the_first_key_is_made_on_the_database_and_the_server_then_needs_keys(
        db_target: str) -> None:
    """No server yet: ``keys create --db`` makes the database and an admin key of every
    workspace; ``keys list`` shows it without its secret; a server on that database then asks
    every request for a key, and manages keys through ``--url`` with the admin key."""
    owner, owner_prefix = created("--db", db_target, "--workspace", "*", "--role", "admin",
                                  "--name", "owner")
    listed = metrana("keys", "list", "--db", db_target)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "owner" in line)
    assert row.split()[:4] == [f"mk_{owner_prefix}", "owner", "admin", "*"]
    assert row.split()[-1] == "active" and "never" in row
    assert owner.split("_", 2)[2] not in listed.stdout + listed.stderr
    proc, url = start_serve(db_target)
    try:
        with httpx.Client(base_url=url) as http:
            assert http.get("/api/runs").status_code == 401
            assert http.get("/api/runs", headers={"Authorization": f"Bearer {owner}"}
                            ).status_code == 200
        env = {**os.environ, "METRANA_API_KEY": owner}
        made = metrana("keys", "create", "--url", url, "--workspace", "team-a", "--role",
                       "write", "--name", "ci", "--expires", "90d", env=env)
        assert made.returncode == 0, made.stderr
        ci = made.stdout.strip()
        assert KEY.fullmatch(ci) and "expires" in made.stderr
        over_http = metrana("keys", "list", "--url", url, env=env)
        assert over_http.returncode == 0, over_http.stderr
        ci_row = next(line for line in over_http.stdout.splitlines() if " ci " in line)
        assert ci_row.split()[2:4] == ["write", "team-a"] and "never" not in ci_row
        # The write key may not manage keys: the refusal names it and what it is.
        refused = metrana("keys", "list", "--url", url, "--api-key", ci)
        assert refused.returncode == 1
        line = one_line(refused.stderr)
        assert "the server refused this (HTTP 403)" in line
        assert f"API key mk_{ci.split('_')[1]}_… may not manage keys" in line
        assert "write key of 'team-a'" in line and ci not in line
        revoked = metrana("keys", "revoke", f"mk_{ci.split('_')[1]}", "--url", url, env=env)
        assert revoked.returncode == 0 and "revoked mk_" in revoked.stdout, revoked.stderr
        again = metrana("keys", "revoke", ci.split("_")[1], "--db", db_target)
        assert "was already revoked" in again.stdout
        assert "revoked" in next(line for line in metrana("keys", "list", "--db", db_target)
                                 .stdout.splitlines() if " ci " in line)
    finally:
        stop_serve(proc)


def test_an_open_server_closes_when_its_first_key_is_made(tmp_path: os.PathLike[str]) -> None:
    """A loopback server started without any key serves everyone; once ``keys create --db``
    made a key it asks for one, within about a second and without a restart."""
    db = str(tmp_path) + "/open.sqlite3"
    proc, url = start_serve(db)
    try:
        with httpx.Client(base_url=url) as http:
            assert http.get("/api/runs").status_code == 200
            key, _ = created("--db", db, "--workspace", "*", "--role", "admin")
            wait_until(lambda: http.get("/api/runs").status_code == 401, timeout=10)
            assert http.get("/api/runs", headers={"Authorization": f"Bearer {key}"}
                            ).status_code == 200
    finally:
        stop_serve(proc)


@pytest.fixture(scope="module")
def keys_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database with one key (the mistakes below change nothing in it)."""
    db = str(tmp_path_factory.mktemp("keys") / "k.sqlite3")
    created("--db", db, "--workspace", "*", "--role", "admin")
    return db


@pytest.mark.parametrize(("args", "message"), [
    (["create", "--workspace", "a", "--role", "read", "--expires", "soon"],
     "--expires: 'soon' is not a duration"),
    (["create", "--workspace", " ", "--role", "read"], "'workspaces' is a non-empty list"),
    (["revoke", "nonsense"], "'nonsense' is not a key prefix"),
    (["revoke", "0badcafe"], "no key mk_0badcafe_… among the keys"),
    (["list", "--url", "http://127.0.0.1:9"], "cannot reach http://127.0.0.1:9"),
])
def test_mistakes_are_one_line_that_says_what_to_fix(keys_db: str, args: list[str],
                                                     message: str) -> None:
    where = [] if "--url" in args else ["--db", keys_db]
    done = metrana("keys", *args, *where)
    assert done.returncode in (1, 2)
    assert message in one_line(done.stderr)


def test_only_hashes_are_stored(tmp_path: os.PathLike[str]) -> None:
    """The database holds a key's prefix and a scrypt hash, never the key or its secret."""
    db = str(tmp_path) + "/h.sqlite3"
    key, prefix = created("--db", db, "--workspace", "w", "--role", "read")
    with sqlite3.connect(db) as conn:
        (stored,) = conn.execute("SELECT secret_hash FROM api_keys WHERE prefix = ?",
                                 (prefix,)).fetchone()
    assert stored.startswith("scrypt$16384$8$1$")
    with open(db, "rb") as f:
        content = f.read()
    assert key.encode() not in content and key.split("_", 2)[2].encode() not in content

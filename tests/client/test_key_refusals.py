"""What a user is told when the server refuses their key (401) or what it may do (403): which
key (by prefix, never more) and which workspace, wherever it surfaces — ``metrana.init``, a
run whose key is revoked while it logs, ``metrana.query`` and the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import metrana
from metrana import MetranaApiError
from metrana.query import MetranaQueryError, QueryClient
from metrana.server import background_server
from metrana.server.store import Store
from tests.server.test_cli import metrana as metrana_cli, one_line
from tests.support import make_key


def test_init_says_which_key_and_which_workspace(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    reader, read_prefix = make_key(db, "read", "team-a")
    elsewhere, other_prefix = make_key(db, "write", "team-b")
    revoked, revoked_prefix = make_key(db, "write", "team-a", revoked=True)
    with background_server(db) as info:
        def init(key: str | None) -> str:
            with pytest.raises(MetranaApiError) as refused:
                metrana.init(api_key=key, workspace_name="team-a", project_name="p",
                             run_name="r", ingestion_url=info.url)
            metrana.close()
            message = str(refused.value)
            assert key is None or key not in message
            return message

        assert (f"creating run team-a/p/r: the server refused this (HTTP 403): API key "
                f"mk_{read_prefix}_… may not create runs in workspace 'team-a': it is a read "
                "key of 'team-a', and that needs role write") in init(reader)
        assert (f"API key mk_{other_prefix}_… may not create runs in workspace 'team-a': it "
                "is a write key of 'team-b'. Use a key of 'team-a'") in init(elsewhere)
        message = init(revoked)
        assert f"the server refused it (HTTP 401): API key mk_{revoked_prefix}_… was revoked" \
            in message and "pass a valid key as api_key= or METRANA_API_KEY" in message
        assert "the server needs an API key (HTTP 401)" in init(None)


def test_a_key_revoked_while_a_run_logs_is_named_in_its_error(tmp_path: Path) -> None:
    """The run's points sent after the revocation are refused (not retried forever), counted,
    and the error names the key."""
    db = tmp_path / "s.sqlite3"
    key, prefix = make_key(db, "write", "team-a")
    with background_server(db) as info:
        session = metrana.session(api_key=key, workspace_name="team-a", project_name="p",
                                  run_name="r", ingestion_url=info.url,
                                  error_strategy="RaiseOnClose")
        session.log("loss", 1.0)
        session.flush()
        store = Store(db)
        try:
            store.revoke_key(prefix)
        finally:
            store.close()
        session.log("loss", 2.0)
        with pytest.raises(Exception) as raised:
            session.close()
    errors = [e for e in raised.value.exceptions  # type: ignore[attr-defined]
              if isinstance(e, MetranaApiError)]
    assert [(e.status, e.points) for e in errors] == [(401, 1)]
    assert (f"the service refused 1 points: the server refused it (HTTP 401): API key "
            f"mk_{prefix}_… was revoked on ") in str(errors[0])
    assert key not in str(errors[0])


def test_query_and_the_cli_say_which_key_and_workspace(tmp_path: Path) -> None:
    db = tmp_path / "s.sqlite3"
    owner, _ = make_key(db, "admin", "*")
    outsider, prefix = make_key(db, "read", "team-b")
    with background_server(db) as info:
        with metrana.session(api_key=owner, workspace_name="team-a", project_name="p",
                             run_name="r", ingestion_url=info.url) as session:
            session.log("loss", 1.0)
        with QueryClient("team-a", "p", url=info.url, api_key=outsider) as client, \
                pytest.raises(MetranaQueryError) as refused:
            client.fetch_runs()
        assert refused.value.status == 403
        assert (f"the server refused this (HTTP 403): API key mk_{prefix}_… may not read in "
                "workspace 'team-a'") in str(refused.value)
        env = {**os.environ, "METRANA_API_KEY": outsider}
        listed = metrana_cli("runs", "--url", info.url, env=env)
        assert listed.returncode == 0 and "team-a/p/r" not in listed.stdout  # not theirs
        export = metrana_cli("export", "team-a/p/r", "--url", info.url, env=env)
        assert export.returncode == 1
        line = one_line(export.stderr)
        assert f"API key mk_{prefix}_… may not read in workspace 'team-a'" in line
        assert outsider not in line
        wrong = metrana_cli("runs", "--url", info.url, "--api-key", outsider[:-1] + "_")
        assert "--api-key KEY or METRANA_API_KEY" in one_line(wrong.stderr)

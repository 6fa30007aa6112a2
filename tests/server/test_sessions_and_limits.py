"""The dashboard's sign-in session, the limit on failed authentications, and who wrote what:
over real sockets, against a server on a thread of the test (its settings are the test's)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from loguru import logger
from metrana_protobuf.ingestion.v1.svc import api_pb2, api_pb2_grpc
from metrana_protobuf.ingestion.v1.types import run_definition_pb2

from metrana.server import auth, background_server
from metrana.server.store import Store
from metrana.server.throttle import FailureLimiter
from tests.support import make_key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def logged() -> Iterator[list[str]]:
    """Every line loguru writes while the test runs (the server's log)."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    yield lines
    logger.remove(sink)


# ---------------------------------------------------------------------------- sessions


def test_signing_in_sets_a_strict_http_only_cookie_and_writes_need_its_csrf(
        tmp_path: Path) -> None:
    """POST /api/session exchanges a key for a session cookie (HttpOnly, SameSite=Strict, for
    this browser session, named for the port); GET says who is signed in; a change made with
    the cookie needs the X-Metrana-CSRF header; signing out ends the session on the server."""
    db = tmp_path / "s.sqlite3"
    key, prefix = make_key(db, "read", "team-a")
    with background_server(db) as info, httpx.Client(base_url=info.url) as http:
        port = info.url.rsplit(":", 1)[1]
        assert http.get("/api/session").json() == {"required": True, "signed_in": False}
        signed = http.post("/api/session", json={"key": key})
        assert signed.status_code == 200, signed.text
        cookie = signed.headers["set-cookie"]
        name, _, value = cookie.split(";")[0].partition("=")
        assert name == f"metrana_session_{port}" and len(value) >= 43
        flags = {f.strip() for f in cookie.split(";")[1:]}
        assert flags == {"Path=/", "HttpOnly", "SameSite=Strict"}  # no Expires: the session's
        who = signed.json()
        assert (who["signed_in"], who["key"], who["role"], who["workspaces"]) == (
            True, f"API key mk_{prefix}_…", "read", ["team-a"])
        assert key not in signed.text and value not in signed.text
        assert http.get("/api/session").json()["csrf"] == who["csrf"]
        assert http.get("/api/runs").status_code == 200  # the cookie alone
        # A change (any method but GET and HEAD) with the cookie needs the CSRF header.
        refused = http.post("/api/query/all_runs", json={})
        assert refused.status_code == 403 and "X-Metrana-CSRF" in refused.json()["message"]
        csrf = {"X-Metrana-CSRF": who["csrf"]}
        assert http.post("/api/query/all_runs", json={}, headers=csrf).status_code == 200
        assert http.request("DELETE", "/api/session", json={}).status_code == 403
        out = http.request("DELETE", "/api/session", json={}, headers=csrf)
        assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
        # The token is dead on the server, not only forgotten by this client.
        with httpx.Client(base_url=info.url, cookies={name: value}) as stale:
            assert stale.get("/api/runs").status_code == 401
        assert http.post("/api/session", json={"key": "mk_00000000_" + "x" * 43}
                         ).status_code == 401


def test_revoking_a_key_ends_its_sessions_and_sessions_expire(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A session lives while its key does (revoked: gone at once) and at most SESSION_TTL_S
    (the expiry the server stored, then checked on every request)."""
    db = tmp_path / "s.sqlite3"
    key, prefix = make_key(db, "write", "team-a")
    with background_server(db) as info, httpx.Client(base_url=info.url) as http:
        assert http.post("/api/session", json={"key": key}).status_code == 200
        assert http.get("/api/runs").status_code == 200
        store = Store(db)
        try:
            store.revoke_key(prefix)
        finally:
            store.close()
        assert http.get("/api/runs").status_code == 401
        assert "sign in again" in http.get("/api/runs").json()["message"]
        other, _ = make_key(db, "write", "team-a")
        monkeypatch.setattr(auth, "SESSION_TTL_S", 3600)
        assert http.post("/api/session", json={"key": other}).status_code == 200
        assert http.get("/api/runs").status_code == 200
        with sqlite3.connect(db) as conn:  # the session's life, as the server recorded it
            (created, expires), = conn.execute(
                "SELECT created_ns, expires_ns FROM web_sessions").fetchall()
            assert abs((expires - created) / 1e9 - 3600) < 60
            # An hour later, as the server sees it (no test waits an hour).
            conn.execute("UPDATE web_sessions SET expires_ns = ?", (time.time_ns() - 1,))
        assert http.get("/api/runs").status_code == 401


def test_a_session_of_the_server_key_ends_when_the_server_key_changes(tmp_path: Path) -> None:
    """METRANA_SERVER_API_KEY signs in too (admin of every workspace); a server restarted with
    another key does not take the old key's sessions."""
    db = tmp_path / "s.sqlite3"
    with background_server(db, api_key="first-server-key") as info, \
            httpx.Client(base_url=info.url) as http:
        signed = http.post("/api/session", json={"key": "first-server-key"})
        assert signed.json()["key"] == "the server's key (METRANA_SERVER_API_KEY)"
        cookies = dict(http.cookies)
        assert http.get("/api/runs").status_code == 200
    port = info.url.rsplit(":", 1)[1]
    with background_server(db, api_key="second-server-key") as info, \
            httpx.Client(base_url=info.url,
                         cookies={f"metrana_session_{info.url.rsplit(':', 1)[1]}":
                                  cookies[f"metrana_session_{port}"]}) as http:
        assert http.get("/api/runs").status_code == 401


def test_an_open_server_needs_no_sign_in_and_makes_no_keys(tmp_path: Path) -> None:
    """A server without keys serves everyone, so nobody signs in; nor can anyone who reaches
    it make the first key (and with it, the server): that is done on the database."""
    with background_server(tmp_path / "open.sqlite3") as info, \
            httpx.Client(base_url=info.url) as http:
        assert http.get("/api/session").json()["required"] is False
        assert http.post("/api/session", json={"key": "anything"}).status_code == 400
        made = http.post("/api/keys/create", json={"workspaces": ["*"], "role": "admin"})
        assert made.status_code == 403 and "metrana keys create --db" in made.json()["message"]
        assert http.post("/api/keys/list", json={}).status_code == 403


# -------------------------------------------------------------- failed authentications


def test_failed_authentications_are_limited_per_address_and_logged_by_prefix(
        tmp_path: Path, logged: list[str]) -> None:
    """After the limit of refused keys from an address, its keys are refused unseen (429 with
    Retry-After; gRPC RESOURCE_EXHAUSTED), the right one too, until the window has passed.
    Requests without a key do not count. The window slides: a failure leaves it a minute
    after it was made (the limiter's clock is driven here, so a busy machine cannot make a
    slow request fall out of it). The log names keys by prefix only."""
    db = tmp_path / "s.sqlite3"
    key, prefix = make_key(db, "read", "team-a")
    wrong_secret = key[:12] + ("A" if key[12] != "A" else "B") + key[13:]
    unknown = "mk_0badcafe_" + "z" * 43
    now = [0.0]
    limiter = FailureLimiter(3, window=60.0, clock=lambda: now[0])
    with background_server(db, auth_failures=limiter) as info, \
            httpx.Client(base_url=info.url) as http:
        for _ in range(5):
            assert http.get("/api/runs").status_code == 401  # no key: not counted
        for wrong in (wrong_secret, unknown):
            assert http.get("/api/runs", headers=bearer(wrong)).status_code == 401
        now[0] = 30.0
        assert http.get("/api/runs", headers=bearer("not-a-metrana-key")).status_code == 401
        throttled = http.get("/api/runs", headers=bearer(key))
        assert throttled.status_code == 429
        assert throttled.headers["retry-after"] == "30"  # when the first two leave the window
        assert "too many failed authentications from 127.0.0.1" in throttled.json()["message"]
        assert http.post("/api/session", json={"key": key}).status_code == 429
        with grpc.insecure_channel(info.url.removeprefix("http://")) as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
            with pytest.raises(grpc.RpcError) as refused:
                list(stub.InitializeRunLogging(api_pb2.InitializeRunLoggingRequest(
                    run=run_definition_pb2.Run(workspace="team-a", project="p", run_name="r"),
                    create_project_if_missing=True), timeout=30,
                    metadata=[("authorization", f"Bearer {key}")]))
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        now[0] = 59.9
        assert http.get("/api/runs", headers=bearer(key)).status_code == 429
        now[0] = 60.0  # one failure (at 30) is left in the window: the key is looked at again
        assert http.get("/api/runs", headers=bearer(key)).status_code == 200
        assert http.get("/api/runs", headers=bearer(unknown)).status_code == 401
        assert http.get("/api/runs", headers=bearer(wrong_secret)).status_code == 401
        assert http.get("/api/runs", headers=bearer(key)).status_code == 429  # 3 again
    refusals = [line for line in logged if "refused" in line]
    assert any(f"refused API key mk_{prefix}_… from 127.0.0.1: wrong secret" in line
               for line in refusals), refusals
    assert any("refused API key mk_0badcafe_… from 127.0.0.1: no such key" in line
               for line in refusals)
    assert any("3 failed authentications from 127.0.0.1" in line for line in logged)
    text = "".join(logged)
    for secret in (key, wrong_secret, unknown, "not-a-metrana-key", key.split("_", 2)[2]):
        assert secret not in text


# -------------------------------------------------------------------------- writers


def test_every_write_records_its_key(db_target: str) -> None:
    """The key that created a run is its ``created_by`` (a client may not set it); each key
    that wrote to it is in its writers, with its first and last write, over HTTP/JSON and
    gRPC alike."""
    writer, writer_prefix = make_key(db_target, "write", "team-a")
    admin, admin_prefix = make_key(db_target, "admin", "*")
    with background_server(db_target) as info, httpx.Client(base_url=info.url) as http:
        def update(key: str, attributes: list[dict[str, Any]] | None = None) -> httpx.Response:
            return http.post("/v1/runs:update", headers=bearer(key), json={
                "sessionId": "1", "runUpdates": [{
                    "workspace": "team-a", "project": "p", "runName": "r",
                    "attributes": attributes or [],
                    "series": [{"metricName": "loss", "scale": "ML_STEP",
                                "points": [{"step": "1", "floatValue": 1.0}]}]}]})

        assert http.post("/v1/runs", headers=bearer(writer), json={
            "run": {"workspace": "team-a", "project": "p", "runName": "r"},
            "createProjectIfMissing": True}).status_code == 200
        assert update(writer).status_code == 200
        assert update(admin).status_code == 200
        spoof = update(writer, [{"path": "created_by", "stringValue": admin_prefix}])
        assert spoof.status_code == 422 and "set by the server" in spoof.json()["message"]
        with grpc.insecure_channel(info.url.removeprefix("http://")) as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
            list(stub.InitializeRunLogging(api_pb2.InitializeRunLoggingRequest(
                run=run_definition_pb2.Run(workspace="team-a", project="p", run_name="g",
                                           orchestration_identifier="job-1"),
                create_project_if_missing=True), timeout=30,
                metadata=[("authorization", f"Bearer {admin}")]))
        runs = {name: http.get(f"/api/runs/team-a/p/{name}", headers=bearer(admin)).json()
                for name in ("r", "g")}
    assert runs["r"]["attributes"]["created_by"] == {"kind": "string", "value": writer_prefix}
    assert [w["key"] for w in runs["r"]["writers"]] == [writer_prefix, admin_prefix]
    assert all(w["first_ns"] <= w["last_ns"] for w in runs["r"]["writers"])
    assert runs["g"]["attributes"]["created_by"]["value"] == admin_prefix
    assert [w["key"] for w in runs["g"]["writers"]] == [admin_prefix]

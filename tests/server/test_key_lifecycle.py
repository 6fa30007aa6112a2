"""A key's life with real clients: rotated while they work without one failed request, and
never written anywhere — not in a log line, a response, a ``repr``, a spool file or the
database (the files the test made are searched)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

import metrana
from metrana.query import QueryClient
from metrana.server import background_server
from metrana.server.access import key_principal
from metrana.server.api_keys import Role
from metrana.server.app import IngestApp
from metrana.server.store import Store
from tests.helpers import wait_until
from tests.server.test_cli import metrana as metrana_cli
from tests.support import make_key, stop_serve


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_a_key_is_rotated_without_a_failed_request(db_target: str) -> None:
    """Create the new key, switch the clients to it, revoke the old one: requests (writes and
    reads) going on all the while never fail; afterwards the old key is refused, and the run
    lists both keys among its writers."""
    owner, _ = make_key(db_target, "admin", "*")
    old, old_prefix = make_key(db_target, "write", "team-a")
    with background_server(db_target) as info:
        with metrana.session(api_key=old, workspace_name="team-a", project_name="p",
                             run_name="rotated", ingestion_url=info.url) as session:
            session.log("loss", 0.0)
        current = [old]
        answers: list[tuple[str, int]] = []
        stop = threading.Event()

        def traffic() -> None:
            with httpx.Client(base_url=info.url) as http:
                step = 1
                while not stop.is_set():
                    key = current[0]
                    wrote = http.post("/v1/runs:update", headers=bearer(key), json={
                        "sessionId": "5", "runUpdates": [{
                            "workspace": "team-a", "project": "p", "runName": "rotated",
                            "series": [{"metricName": "traffic", "scale": "ML_STEP", "points": [
                                {"step": str(step), "floatValue": 1.0}]}]}]})
                    read = http.get("/api/runs/team-a/p/rotated", headers=bearer(key))
                    answers.extend([(key, wrote.status_code), (key, read.status_code)])
                    step += 1

        def count(key: str) -> int:
            return sum(1 for k, _ in answers if k == key)

        worker = threading.Thread(target=traffic)
        worker.start()
        try:
            with httpx.Client(base_url=info.url, headers=bearer(owner)) as admin:
                wait_until(lambda: count(old) >= 10)
                made = admin.post("/api/keys/create", json={"workspaces": ["team-a"],
                                                            "role": "write", "name": "new"})
                new, new_prefix = made.json()["key"], made.json()["prefix"]
                current[0] = new  # the switch
                wait_until(lambda: count(new) >= 10)
                assert admin.post("/api/keys/revoke", json={"prefix": old_prefix}
                                  ).json()["status"] == "revoked"
                settled = count(new)
                wait_until(lambda: count(new) >= settled + 10)
        finally:
            stop.set()
            worker.join(30)
        assert {status for _, status in answers} == {200}, answers
        with httpx.Client(base_url=info.url) as http:
            assert http.get("/api/runs", headers=bearer(old)).status_code == 401
            detail = http.get("/api/runs/team-a/p/rotated", headers=bearer(new)).json()
        assert [w["key"] for w in detail["writers"]] == [old_prefix, new_prefix]
        with metrana.session(api_key=new, workspace_name="team-a", project_name="p",
                             run_name="rotated", ingestion_url=info.url) as session:
            session.log("loss", 1.0)
    store = Store(db_target)
    try:
        run = store.get_run("team-a", "p", "rotated")
        loss = next(s for s in run["series"] if s["metric_name"] == "loss")
        assert loss["point_count"] == 2
    finally:
        store.close()


def _database_text(db_target: str) -> bytes:
    """Everything the database holds, as bytes to search: the SQLite files as they are on
    disk (WAL too), or every row of every table of the PostgreSQL database."""
    if not db_target.startswith("postgresql://"):
        return b"".join(p.read_bytes() for p in Path(db_target).parent.glob(
            Path(db_target).name + "*"))
    import psycopg

    with psycopg.connect(db_target) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "current_schema()").fetchall()]
        return repr([conn.execute(f"SELECT * FROM {t}").fetchall() for t in tables]).encode()


def test_a_key_is_never_written_anywhere(db_target: str, tmp_path: Path,
                                         spool_root: Path) -> None:
    """Keys in use by a server process (its own key and keys of its database), the client, an
    offline run and its sync, metrana.query, the CLI, the dashboard's sign-in and refused
    attempts: none of the keys appears in the server's log, any response the test received,
    any repr, the spool, the test's files, or the database."""
    server_key = "server-key-" + "s3cr3t" * 6
    owner, _ = make_key(db_target, "admin", "*")
    writer, _ = make_key(db_target, "write", "team-a")
    revoked, _ = make_key(db_target, "write", "team-a", revoked=True)
    secrets = [server_key, owner, writer, revoked]
    log = tmp_path / "serve.log"
    responses: list[str] = []

    def record(response: httpx.Response) -> None:
        response.read()
        responses.append(repr(response.headers) + response.text)

    with open(log, "w") as err:
        proc, url = _serve_logged(db_target, server_key, err)
        try:
            reprs: list[str] = []
            with metrana.session(api_key=writer, workspace_name="team-a", project_name="p",
                                 run_name="live", ingestion_url=url) as session:
                session.log("loss", 1.0)
                reprs.append(repr(session))
            offline = metrana.session(api_key=writer, workspace_name="team-a",
                                      project_name="p", run_name="offline",
                                      ingestion_url=url, mode="offline")
            offline.log("loss", 2.0)
            reprs.append(repr(offline))
            offline.close()
            # The offline run's spool as it is before sync delivers (and removes) it.
            spooled = {str(p): p.read_bytes() for p in spool_root.rglob("*") if p.is_file()}
            env = {**os.environ, "METRANA_API_KEY": writer, "METRANA_SPOOL_DIR": str(spool_root)}
            synced = metrana_cli("sync", env=env)
            assert synced.returncode == 0, synced.stderr
            outputs = [synced.stdout + synced.stderr]
            with QueryClient("team-a", "p", url=url, api_key=owner) as client:
                reprs.append(repr(client))
                assert sorted(client.fetch_runs()["name"]) == ["live", "offline"]
            for command in (["runs", "--url", url, "--api-key", owner],
                            ["keys", "list", "--url", url, "--api-key", server_key],
                            ["runs", "--url", url, "--api-key", revoked]):
                done = metrana_cli(*command)
                outputs.append(done.stdout + done.stderr)
            with httpx.Client(base_url=url, event_hooks={"response": [record]}) as http:
                http.post("/api/session", json={"key": writer})
                http.get("/api/runs")
                http.post("/api/session", json={"key": revoked})
                http.get("/api/runs", headers=bearer(revoked))
                http.get("/api/runs", headers=bearer(server_key[:-1]))
                http.post("/api/keys/list", headers=bearer(server_key), json={})
            store = Store(db_target)
            try:
                reprs += [repr(IngestApp(store, api_key=server_key)), repr(store.key_records()),
                          repr(key_principal("1a2b3c4d", Role.ADMIN, ["*"]))]
            finally:
                store.close()
        finally:
            stop_serve(proc)
    assert "refused API key mk_" in log.read_text()  # the log has lines about keys ...
    texts = {"log": log.read_text(), "responses": "".join(responses), "reprs": "".join(reprs),
             "outputs": "".join(outputs)}
    files = {str(p): p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    files["database"] = _database_text(db_target)
    assert spooled  # ... and the spool was used
    files.update(spooled)
    for secret in secrets:
        hidden = secret.split("_", 2)[2] if secret.startswith("mk_") else secret
        for where, text in texts.items():
            assert hidden not in text, (where, text[text.find(hidden) - 200:][:400])
        for where, data in files.items():
            assert hidden.encode() not in data, where


def _serve_logged(db: str, server_key: str, err: Any) -> tuple[subprocess.Popen[str], str]:
    """``metrana serve`` with its own key, its stderr (its log) going to ``err``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", db],
        stdout=subprocess.PIPE, stderr=err, text=True,
        env={**os.environ, "METRANA_SERVER_API_KEY": server_key})
    assert proc.stdout is not None
    for line in proc.stdout:
        if "listening on " in line:
            return proc, line.split("listening on ", 1)[1].strip()
    raise AssertionError("metrana serve did not start")

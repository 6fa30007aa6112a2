"""Who may do what, over real sockets against ``metrana serve`` on both stores: every kind of
key against every kind of request, HTTP/JSON and gRPC, each cell's status asserted; and the
route tables themselves, so that a route added later cannot be left out of the check."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from metrana_protobuf.ingestion.v1.svc import api_pb2, api_pb2_grpc
from metrana_protobuf.ingestion.v1.types import run_definition_pb2, updates_pb2

import metrana
from metrana.server import app
from metrana.server.access import DELETE_RUNS, EDIT_RUNS, OWNER, Principal, key_principal
from metrana.server.api_keys import Role, new_key
from metrana.server.errors import Forbidden
from metrana.server.grpc_codec import run_token
from tests.support import make_key, start_serve, stop_serve

WS, OTHER, PROJECT = "team-a", "team-b", "proj"
ROWS = ("read", "write", "admin", "wrong workspace", "revoked", "expired", "unknown", "no key")
# Expected status of each request (columns) for each kind of key (rows). "delete" is issue
# 25's route (not served yet: its need is checked below, on the access model itself).
EXPECTED = {
    #                  create log  read query dash keys  gRPC create, log
    "read":            (403, 403, 200, 200, 200, 403, "PERMISSION_DENIED", "PERMISSION_DENIED"),
    "write":           (200, 200, 200, 200, 200, 403, "OK", "OK"),
    "admin":           (200, 200, 200, 200, 200, 200, "OK", "OK"),
    "wrong workspace": (403, 403, 403, 403, 403, 403, "PERMISSION_DENIED", "PERMISSION_DENIED"),
    **{row: (401, 401, 401, 401, 401, 401, "UNAUTHENTICATED", "UNAUTHENTICATED")
       for row in ("revoked", "expired", "unknown", "no key")},
}
Keyed = tuple[str, dict[str, tuple[str | None, str | None]], str]  # URL, keys by row, owner's
COLUMNS = ("create run", "log", "read run", "query", "dashboard data", "manage keys",
           "gRPC create run", "gRPC log")


@pytest.fixture
def keyed(db_target: str) -> Iterator[Keyed]:
    """A server with a key of each kind (and the owner's), and a run ``base`` in each
    workspace."""
    keys: dict[str, tuple[str | None, str | None]] = {
        "read": make_key(db_target, "read", WS),
        "write": make_key(db_target, "write", WS),
        "admin": make_key(db_target, "admin", WS),
        "wrong workspace": make_key(db_target, "admin", OTHER),  # an admin, of another one
        "revoked": make_key(db_target, "admin", "*", revoked=True),
        "expired": make_key(db_target, "admin", "*", expired=True),
        "unknown": (new_key()[0], None),
        "no key": (None, None),
    }
    owner, _ = make_key(db_target, "admin", "*")
    # Most of the matrix fails on purpose, from one address: more than the default limit.
    proc, url = start_serve(db_target, "--max-auth-failures", "1000")
    try:
        with httpx.Client(base_url=url, headers=bearer(owner)) as http:
            for workspace in (WS, OTHER):
                assert create_run(http, workspace, "base").status_code == 200
        yield url, keys, owner
    finally:
        stop_serve(proc)


def bearer(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def create_run(http: httpx.Client, workspace: str, run: str) -> httpx.Response:
    return http.post("/v1/runs", json={"run": {"workspace": workspace, "project": PROJECT,
                                               "runName": run}, "createProjectIfMissing": True})


def log(http: httpx.Client, step: int) -> httpx.Response:
    return http.post("/v1/runs:update", json={"sessionId": "3", "runUpdates": [{
        "workspace": WS, "project": PROJECT, "runName": "base", "series": [{
            "metricName": "loss", "scale": "ML_STEP", "points": [
                {"step": str(step), "floatValue": 1.0}]}]}]})


def dashboard_data(http: httpx.Client, key: str | None) -> int:
    """Sign in as the dashboard does, then read the run's live series with the cookie (and no
    key): the status of whichever was refused, else of the read."""
    if key is not None:
        signed = http.post("/api/session", json={"key": key}, headers={"Authorization": ""})
        if signed.status_code != 200:
            return signed.status_code
        assert signed.cookies and "HttpOnly" in signed.headers["set-cookie"]
    with httpx.Client(base_url=str(http.base_url), cookies=http.cookies) as browser:
        return browser.get(f"/api/runs/{WS}/{PROJECT}/base/series?since=0").status_code


def grpc_status(call: Callable[[], Any]) -> str:
    try:
        call()
    except grpc.RpcError as exc:
        return str(exc.code().name)
    return "OK"


def grpc_create(stub: Any, metadata: list[tuple[str, str]], run: str) -> str:
    """InitializeRunLogging (create the run) in the workspace: its status's name."""
    return grpc_status(lambda: list(stub.InitializeRunLogging(
        api_pb2.InitializeRunLoggingRequest(
            run=run_definition_pb2.Run(workspace=WS, project=PROJECT, run_name=run),
            create_project_if_missing=True), timeout=30, metadata=metadata)))


def grpc_log(stub: Any, metadata: list[tuple[str, str]], token: bytes, step: int) -> str:
    """UpdateRunStream of one point into the run ``token`` names: its status's name."""
    return grpc_status(lambda: list(stub.UpdateRunStream(iter([
        api_pb2.UpdateRunRequest(run_id=token), grpc_update(token, step)]),
        timeout=30, metadata=metadata)))


def test_every_key_against_every_request(keyed: Keyed) -> None:
    """{read, write, admin, wrong workspace, revoked, expired, unknown, no key} × {create run,
    log, read run, query, dashboard data, manage keys, and gRPC's create and log}: each cell's
    status; a 403 names the workspace and the key's prefix, a 401 the key's prefix (never its
    secret)."""
    url, keys, owner = keyed
    counter = itertools.count()
    observed: dict[str, tuple[object, ...]] = {}
    channel = grpc.insecure_channel(url.removeprefix("http://"))
    stub = api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
    with httpx.Client(base_url=url) as owner_view:
        token = run_token(WS, PROJECT, "base", owner_view.get(
            f"/api/runs/{WS}/{PROJECT}/base", headers=bearer(owner)).json()["created_ns"])
    try:
        for row in ROWS:
            key, prefix = keys[row]
            metadata = [("authorization", f"Bearer {key}")] if key else []
            with httpx.Client(base_url=url, headers=bearer(key)) as http:
                answers = [
                    create_run(http, WS, f"new-{next(counter)}"),
                    log(http, next(counter)),
                    http.get(f"/api/runs/{WS}/{PROJECT}/base"),
                    http.post("/api/query/runs", json={"workspace": WS, "project": PROJECT}),
                ]
                dash = dashboard_data(http, key)
                answers.append(http.post("/api/keys/create", json={"workspaces": [WS],
                                                                   "role": "read"}))
            observed[row] = (*(a.status_code for a in answers[:4]), dash, answers[4].status_code,
                             grpc_create(stub, metadata, f"grpc-{next(counter)}"),
                             grpc_log(stub, metadata, token, next(counter)))
            for answer in answers:
                message = answer.json().get("message", "") if answer.status_code != 200 else ""
                if key:
                    assert key not in answer.text
                if answer.status_code == 403:
                    assert f"mk_{prefix}_…" in message and (f"'{WS}'" in message), message
                if answer.status_code == 401 and prefix is not None:
                    assert f"mk_{prefix}_…" in message, message
    finally:
        channel.close()
    assert {row: observed[row] for row in ROWS} == EXPECTED, COLUMNS


def grpc_update(token: bytes, step: int) -> Any:
    return api_pb2.UpdateRunRequest(
        run_id=token, logger_session_id=9, sequence_number=step,
        series_declarations=[updates_pb2.SeriesDeclaration(
            metric_name="grpc-loss", scale="ML_STEP", declaration_id=1,
            ordering=updates_pb2.ORDERING_MODE_ABSOLUTE_ORDERED)],
        series=[updates_pb2.StreamingSeriesUpdate(series_id=1, point_batches=[
            updates_pb2.PointBatch(values=[1.0], first_step=step,
                                   timestamp_millis=1_700_000_000_000)])])


def test_every_route_of_the_tables_is_refused_without_a_key_or_outside_its_scope(
        keyed: Keyed) -> None:
    """The route tables are the routing: each route of ``app.ENDPOINTS`` and of the tables
    under a prefix (``app.TABLES``: the read API's ``POST /api/query/<route>``) is refused
    without a key (401) and, for a key of another workspace, 403; so a route added to them
    later is covered as it is."""
    url, keys, _ = keyed
    other, _ = keys["wrong workspace"]
    names = {"workspace": WS, "project": PROJECT, "run": "base"}
    with httpx.Client(base_url=url) as anonymous, \
            httpx.Client(base_url=url, headers=bearer(other)) as outsider:
        for path, endpoint in app.ENDPOINTS.items():
            if endpoint.need is None:
                continue  # the sign-in: it is how a key gets in (test_keys_and_sessions.py)
            for method in endpoint.methods:
                answer = anonymous.request(method, path, json={})
                assert answer.status_code == 401, (method, path, answer.text)
        assert sorted(app.ENDPOINTS) == ["/api/keys/create", "/api/keys/list",
                                         "/api/keys/revoke", "/api/session", "/v1/runs",
                                         "/v1/runs:update"]
        assert list(app.TABLES) == [app.QUERY_PREFIX]
        for prefix, table in app.TABLES.items():
            for route in table.routes:
                path = f"{prefix}{route}"
                assert anonymous.post(path, json=names).status_code == 401, route
                answer = outsider.post(path, json=names)
                if table.need_of(route).workspaces is None:  # a listing: theirs only
                    assert answer.status_code == 200, (route, answer.text)
                    assert all(run["workspace"] == OTHER for run in answer.json()["runs"])
                else:
                    assert answer.status_code == 403, (route, answer.text)
                    assert f"in workspace '{WS}'" in answer.json()["message"]


# A server path as the code writes it: quoted in Python (f-strings too), quoted or in a template
# in the dashboard's JavaScript; up to where a variable part starts.
_PATH_LITERAL = {".py": re.compile(r"""["'](/(?:api|v1)/[\w.:/-]*)"""),
                 ".js": re.compile(r"""["'`](/(?:api|v1)/[\w.:/-]*)""")}


def _routed(path: str) -> bool:
    """Whether the app answers ``path`` (or, for a prefix ending in ``/``, the paths under it)
    from its tables, each route there with its need: an endpoint, a table's prefix, or the
    read API's GET aliases."""
    if path in app.ENDPOINTS or any(path.startswith(prefix) for prefix in app.TABLES):
        return True
    if path.endswith("/") and any(endpoint.startswith(path) for endpoint in app.ENDPOINTS):
        return True  # f"/api/keys/{action}"
    return path == app.ALIASES or path.startswith(app.ALIASES + "/")


def test_every_path_the_code_uses_is_a_route_of_the_tables() -> None:
    """Every server path written anywhere in metrana (the clients, the CLI, the dashboard's
    JavaScript, the app itself) is one the route tables answer, so each has a declared need:
    a route added with a branch of its own instead of a table entry (say ``/api/manage/``
    answered in ``_dispatch``, or called by the dashboard) fails here until it is in the
    tables, and then the tests above check its refusals."""
    root = Path(metrana.__file__).parent
    found: dict[str, set[str]] = {}
    for file in sorted(root.rglob("*")):
        pattern = _PATH_LITERAL.get(file.suffix)
        if pattern is None or "vendor" in file.parts:
            continue
        for path in pattern.findall(file.read_text(encoding="utf-8")):
            found.setdefault(path, set()).add(str(file.relative_to(root)))
    assert {"/v1/runs", "/api/query/", "/api/session", "/api/runs/"} <= set(found), found
    assert {path: files for path, files in found.items() if not _routed(path)} == {}


def test_lists_show_only_the_workspaces_a_key_covers(keyed: Keyed) -> None:
    """The runs list (the dashboard's ``GET /api/runs``, the query API's ``all_runs``) shows a
    key its own workspaces' runs only; asking for another workspace's gives nothing more; a
    key of every workspace sees all."""
    url, keys, owner = keyed
    reader, _ = keys["read"]
    with httpx.Client(base_url=url, headers=bearer(reader)) as http:
        listed = http.get("/api/runs").json()["runs"]
        assert {(r["workspace"], r["run"]) for r in listed} == {(WS, "base")}
        asked = http.post("/api/query/all_runs", json={"workspaces": [OTHER, WS]}).json()
        assert {r["workspace"] for r in asked["runs"]} == {WS}
        assert http.post("/api/query/all_runs", json={"workspaces": [OTHER]}).json() == \
            {"runs": []}
    with httpx.Client(base_url=url, headers=bearer(owner)) as http:
        assert {r["workspace"] for r in http.get("/api/runs").json()["runs"]} == {WS, OTHER}


def test_what_each_role_may_do_to_runs_of_its_workspaces() -> None:
    """Issue 25's run edits, on the access model (their routes are not served yet): tags and
    notes need write, delete and rename need admin, each in the run's workspace; the owner of
    the database may do everything."""
    body = {"workspace": WS, "project": PROJECT, "run": "base"}
    outcomes: dict[tuple[str, str], bool] = {}
    principals: dict[str, Principal] = {
        role.word: key_principal("1a2b3c4d", role, [WS]) for role in Role}
    principals["other workspace"] = key_principal("1a2b3c4d", Role.ADMIN, [OTHER])
    principals["owner"] = OWNER
    for name, principal in principals.items():
        for need in (EDIT_RUNS, DELETE_RUNS):
            try:
                principal.require(need, body)
                outcomes[(name, need.what)] = True
            except Forbidden as refused:
                assert "mk_1a2b3c4d_…" in str(refused) and f"'{WS}'" in str(refused)
                outcomes[(name, need.what)] = False
    assert outcomes == {
        ("read", "edit tags and notes"): False, ("read", "delete or rename runs"): False,
        ("write", "edit tags and notes"): True, ("write", "delete or rename runs"): False,
        ("admin", "edit tags and notes"): True, ("admin", "delete or rename runs"): True,
        ("other workspace", "edit tags and notes"): False,
        ("other workspace", "delete or rename runs"): False,
        ("owner", "edit tags and notes"): True, ("owner", "delete or rename runs"): True}

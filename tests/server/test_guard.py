"""The local server is not an open door: what web pages in the user's browser cannot do to it
(foreign ``Host`` = DNS rebinding, cross-site writes), over a real server and real sockets."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx
import pytest
import trio

import metrana
from metrana._spool import run_spool_dir
from metrana.server import ServerInfo, serve
from metrana.server.guard import RequestGuard
from tests.support import QuietHandler, plain_http_server, start_serve, stop_serve

CREATE = {"run": {"workspace": "ws", "project": "proj", "runName": "mine"},
          "createProjectIfMissing": True}
HOSTILE_CREATE = {"run": {"workspace": "ws", "project": "proj", "runName": "theirs"},
                  "createProjectIfMissing": True}
UPDATE = {"sessionId": "7", "runUpdates": [{
    "workspace": "ws", "project": "proj", "runName": "mine",
    "series": [{"metricName": "loss", "scale": "ML_STEP",
                "points": [{"step": "0", "floatValue": 1.0}]}]}]}
JSON = {"Content-Type": "application/json"}
EVIL = "http://evil.example"


def dumps(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def authority(url: str) -> str:
    return urlsplit(url).netloc  # 127.0.0.1:PORT


async def stored(client: httpx.AsyncClient) -> dict[str, int]:
    """Run name -> series count, read the way the client's own programs read."""
    runs = (await client.get("/api/runs")).json()["runs"]
    return {r["run"]: r["series_count"] for r in runs}


@pytest.fixture
async def sqlite_server(tmp_path: Path) -> AsyncIterator[ServerInfo]:
    """One store is enough where only headers are judged and nothing is stored."""
    async with trio.open_nursery() as nursery:
        yield await nursery.start(lambda task_status: serve(
            db_path=tmp_path / "guard.sqlite3", port=0, task_status=task_status))
        nursery.cancel_scope.cancel()


async def test_cross_site_simple_writes_are_refused_and_store_nothing(server: ServerInfo) -> None:
    """The POSTs any web page may send without asking (text/plain, a form, multipart), from a
    foreign origin or from none, are refused: 403 naming the origin, or 415 naming the type."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.post("/v1/runs", json=CREATE)).status_code == 200
        for path, body in (("/v1/runs", HOSTILE_CREATE), ("/v1/runs:update", UPDATE)):
            for content_type in ("text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                 "multipart/form-data; boundary=x"):
                for origin in (EVIL, "null"):
                    response = await client.post(path, content=dumps(body), headers={
                        "Content-Type": content_type, "Origin": origin})
                    assert response.status_code == 403, response.text
                    assert response.json()["status"] == "PERMISSION_DENIED"
                    assert f"Origin '{origin}'" in response.json()["message"]
                refused = await client.post(path, content=dumps(body),
                                            headers={"Content-Type": content_type})
                assert refused.status_code == 415, refused.text
                assert "Content-Type: application/json" in refused.json()["message"]
            via_referer = await client.post(path, content=dumps(body), headers={
                "Content-Type": "text/plain", "Referer": EVIL + "/page.html"})
            assert via_referer.status_code == 403
            assert f"Referer '{EVIL}/page.html'" in via_referer.json()["message"]
            # The right type does not help a foreign origin either (it would need a preflight).
            assert (await client.post(path, json=body, headers={"Origin": EVIL})).status_code == 403
        assert await stored(client) == {"mine": 0}


async def test_a_foreign_host_is_refused_for_reads_and_writes(server: ServerInfo) -> None:
    """DNS rebinding: a request addressed to another name is refused before any route, the
    dashboard included, with a message naming --allowed-host and that name."""
    port = urlsplit(server.url).port
    foreign = {"Host": f"evil.example:{port}"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for method, path in (("GET", "/api/runs"), ("GET", "/"), ("GET", "/static/dashboard.js"),
                             ("POST", "/v1/runs"), ("POST", "/api/query/runs")):
            response = await client.request(method, path, headers=foreign, json=CREATE
                                            if method == "POST" else None)
            assert response.status_code == 403, (method, path)
            error = response.json()
            assert (error["code"], error["status"]) == (403, "PERMISSION_DENIED")
            assert "--allowed-host evil.example;" in error["message"]
            assert f"'evil.example:{port}'" in error["message"]
        same_origin = {**foreign, "Origin": f"http://evil.example:{port}"}  # as a rebound page
        assert (await client.post("/v1/runs", json=HOSTILE_CREATE,
                                  headers=same_origin)).status_code == 403
        assert await stored(client) == {}


@pytest.mark.parametrize(("host", "served"), [
    ("127.0.0.1:{port}", True),
    ("localhost:{port}", True),
    ("LocalHost:{port}", True),
    ("localhost.:{port}", True),
    ("localhost", True),  # no port: the name is checked, not the port
    ("[::1]:{port}", True),
    ("[::1]", True),
    ("192.168.1.20:{port}", True),  # --host 0.0.0.0 reached by address: cannot be rebound
    ("[fe80::1]:{port}", True),
    ("0.0.0.0:{port}", True),
    ("evil.example", False),
    ("localhost.evil.example:{port}", False),
    ("127.0.0.1.nip.io:{port}", False),
    ("evil.localhost:{port}", False),
    ("[::1:{port}", False),  # malformed
    ("localhost:http", False),
    ("localhost:99999", False),
])
async def test_host_names_of_this_server_are_served(sqlite_server: ServerInfo, host: str,
                                                    served: bool) -> None:
    port = urlsplit(sqlite_server.url).port
    async with httpx.AsyncClient(base_url=sqlite_server.url, timeout=30) as client:
        response = await client.get("/api/runs", headers={"Host": host.format(port=port)})
    assert response.status_code == (200 if served else 403), response.text


async def test_writes_from_the_servers_own_origin_pass(sqlite_server: ServerInfo) -> None:
    """A page of the server itself (the dashboard) may write: its Origin is the Host it used.
    Any other origin, a different port or name of the same machine included, may not."""
    here = authority(sqlite_server.url)
    port = urlsplit(sqlite_server.url).port or 0
    async with httpx.AsyncClient(base_url=sqlite_server.url, timeout=30) as client:
        assert (await client.post("/v1/runs", json=CREATE)).status_code == 200

        async def post(headers: dict[str, str]) -> httpx.Response:
            return await client.post("/api/query/runs", content=b'{"workspace": "ws", '
                                     b'"project": "proj"}', headers={**JSON, **headers})

        for own in ({"Origin": f"http://{here}"}, {"Origin": f"https://{here}"},
                    {"Referer": f"http://{here}/#/run/ws/proj/r"},
                    {"Host": f"[::1]:{port}", "Origin": f"http://[::1]:{port}"},
                    {"Host": "localhost", "Origin": "http://localhost"},
                    {"Host": "localhost:80", "Origin": "http://localhost"},
                    {}):
            response = await post(own)
            assert response.status_code == 200, (own, response.text)
        for foreign in (f"http://127.0.0.1:{port + 1}", f"http://localhost:{port}",
                        f"ftp://{here}", "file://", "http://127.0.0.1", "null"):
            response = await post({"Origin": foreign})
            assert response.status_code == 403, foreign
            assert f"Origin '{foreign}' is not this server's own origin (http://{here})" \
                in response.json()["message"]
        foreign_referer = await post({"Referer": f"http://127.0.0.1:{port + 1}/"})
        assert foreign_referer.status_code == 403
        # Origin decides when both are there.
        assert (await post({"Origin": f"http://{here}",
                            "Referer": "http://evil.example/"})).status_code == 200


async def test_no_cors_headers_and_foreign_preflights_are_refused(sqlite_server: ServerInfo
                                                                  ) -> None:
    """A foreign page may not even ask: its preflight is refused, and no answer carries an
    Access-Control header, so a browser lets no foreign page read or write."""
    async with httpx.AsyncClient(base_url=sqlite_server.url, timeout=30) as client:
        preflight = await client.options("/v1/runs", headers={
            "Origin": EVIL, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert preflight.status_code == 403
        assert f"Origin '{EVIL}'" in preflight.json()["message"]
        read = await client.get("/api/runs", headers={"Origin": EVIL})
        assert read.status_code == 200  # a GET changes nothing; the page cannot read it:
        own = await client.options("/v1/runs")  # no Origin: the router's answer, not a 2xx
        assert own.status_code == 405
        for response in (preflight, read, own):
            assert not [k for k in response.headers if k.lower().startswith("access-control")]


async def test_a_request_without_host_is_served_as_a_program(sqlite_server: ServerInfo) -> None:
    """HTTP/1.0 without Host: browsers always send one, so this is a program; it is served,
    and its writes are judged like any other (JSON only, no foreign Origin)."""
    address = urlsplit(sqlite_server.url)
    body = dumps(CREATE)

    async def raw(request: bytes) -> bytes:
        stream = await trio.open_tcp_stream(address.hostname or "", address.port or 0)
        async with stream:
            await stream.send_all(request)
            answer = b""
            while chunk := await stream.receive_some():
                answer += chunk
        return answer

    def post(*headers: bytes) -> bytes:
        return (b"POST /v1/runs HTTP/1.0\r\n" + b"".join(h + b"\r\n" for h in headers)
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    assert (await raw(b"GET /api/runs HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200")
    assert (await raw(post(b"Content-Type: text/plain"))).startswith(b"HTTP/1.1 415")
    refused = await raw(post(b"Content-Type: application/json", b"Origin: http://127.0.0.1"))
    assert refused.startswith(b"HTTP/1.1 403") and b"the request has no Host" in refused
    assert (await raw(post(b"Content-Type: application/json"))).startswith(b"HTTP/1.1 200")


def test_allowed_host_lets_a_named_host_through(tmp_path: Path) -> None:
    """--allowed-host (repeatable) adds names, as a reverse proxy or a DNS name needs; the
    server's own origin under that name may write; other names stay refused."""
    proc, url = start_serve(tmp_path / "named.sqlite3", "--allowed-host", "Metrana.Example.com",
                            "--allowed-host", "[fd00::7]")
    try:
        port = urlsplit(url).port
        with httpx.Client(base_url=url, timeout=30) as client:
            def status(host: str, method: str = "GET", **headers: str) -> int:
                return client.request(method, "/api/runs" if method == "GET" else "/v1/runs",
                                      json=CREATE if method == "POST" else None,
                                      headers={"Host": host, **headers}).status_code

            assert status(f"metrana.example.com:{port}") == 200
            assert status("METRANA.EXAMPLE.COM") == 200
            assert status(f"[fd00::7]:{port}") == 200
            assert status(f"metrana.example.com:{port}", "POST",
                          Origin=f"https://metrana.example.com:{port}") == 200
            assert status(f"other.example:{port}") == 403
            assert status(f"metrana.example.com.evil:{port}") == 403
            refused = client.get("/api/runs", headers={"Host": "other.example"}).json()
            assert "localhost, any IP address, metrana.example.com" in refused["message"]
            assert "--allowed-host other.example;" in refused["message"]
            assert [r["run"] for r in client.get("/api/runs").json()["runs"]] == ["mine"]
    finally:
        stop_serve(proc)


def test_a_public_bind_prints_the_names_it_answers_to(tmp_path: Path) -> None:
    """`metrana serve --host 0.0.0.0` says which Host names it serves and how to add one."""
    env = {**os.environ, "METRANA_SERVER_API_KEY": "k-guard-test"}  # not open while it runs
    proc, url = start_serve(tmp_path / "public.sqlite3", "--host", "0.0.0.0", env=env)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
    finally:
        stop_serve(proc)
    assert re.fullmatch(r"metrana serve: answers requests addressed to localhost, any IP "
                        r"address; .*--allowed-host \S+\n", line), line


@pytest.mark.parametrize("bad", ["http://metrana.example.com", "metrana.example.com:8787",
                                 "*", "a b", "example.com/path", ""])
def test_a_bad_allowed_host_is_a_command_line_error(tmp_path: Path, bad: str) -> None:
    done = subprocess.run([sys.executable, "-m", "metrana", "serve", "--port", "0", "--db",
                           str(tmp_path / "x.sqlite3"), "--allowed-host", bad],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr == (f"metrana serve: --allowed-host: not a host name: {bad!r}; give the "
                           "name as it appears in the URL clients use, without scheme, port or "
                           "path (e.g. metrana.example.com)\n")
    assert not (tmp_path / "x.sqlite3").exists()  # refused before anything was created


# ------------------------------------------------------------------------ the client is unaffected

@contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, list[Seen]]]:
    """A loopback proxy that forwards each request to ``upstream`` exactly as it came, its Host
    included (so the server judges the client's own headers), and records what it saw."""
    seen: list[Seen] = []

    class Forward(QuietHandler):
        protocol_version = "HTTP/1.1"

        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = [(k, v) for k, v in self.headers.items()
                       if k.lower() not in ("content-length", "connection")]
            with httpx.Client(base_url=upstream, timeout=60) as client:
                response = client.request(self.command, self.path, content=body, headers=headers)
            seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in headers},
                             response.status_code))
            self.send_response(response.status_code)
            self.send_header("Content-Type", response.headers.get("content-type", ""))
            self.send_header("Content-Length", str(len(response.content)))
            self.end_headers()
            self.wfile.write(response.content)

        do_GET = do_POST = do_HEAD = do_OPTIONS = forward

    with plain_http_server(Forward) as url:
        yield url, seen


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int


def test_the_clients_requests_carry_no_origin_and_pass(live_server: ServerInfo,
                                                       spool_root: Path) -> None:
    """init/log/close (plain and gzip bodies), sync, metrana.query and the CLI's runs and export
    send a loopback Host, no Origin or Referer, and writes as JSON: all served, all stored."""
    from metrana.query import QueryClient

    run = f"client-{uuid.uuid4().hex[:8]}"
    with recording_proxy(live_server.url) as (url, seen):
        for compress in (False, True):
            with metrana.session(workspace_name="ws", project_name="proj", run_name=run,
                                 ingestion_url=url, compress=compress) as session:
                session.log({"loss": 1.0, "acc": 0.5})
        with metrana.session(workspace_name="ws", project_name="proj", run_name=run,
                             mode="offline") as offline:
            offline.log({"loss": 0.25})
        report = metrana.sync(run_spool_dir(spool_root, "ws", "proj", run), ingestion_url=url)
        assert (report.delivered, tuple(report.errors)) == (1, ())
        with QueryClient("ws", "proj", url=url) as query:
            losses = query.fetch_float_series(run, "loss")
        assert losses["loss"].tolist() == [1.0, 1.0, 0.25]
        listed = subprocess.run([sys.executable, "-m", "metrana", "runs", "--url", url],
                                capture_output=True, text=True, timeout=60)
        assert f"ws/proj/{run}" in listed.stdout, listed.stderr
        exported = subprocess.run([sys.executable, "-m", "metrana", "export", f"ws/proj/{run}",
                                   "--url", url], capture_output=True, text=True, timeout=60)
        assert exported.returncode == 0 and exported.stdout.count("\n") == 1 + 5, exported.stderr
    kinds = {(s.method, re.sub(r"/api/runs/.*", r"/api/runs/…", s.path),
              s.headers.get("content-encoding")) for s in seen}
    # metrana.query reads points; the CLI's runs and export read through the same routes.
    assert kinds >= {("POST", "/v1/runs", None), ("POST", "/v1/runs:update", None),
                     ("POST", "/v1/runs:update", "gzip"), ("POST", "/api/query/points", None),
                     ("POST", "/api/query/all_runs", None), ("POST", "/api/query/run", None),
                     ("POST", "/api/query/series_points", None)}, kinds
    proxy_host = authority(url)
    for s in seen:
        assert "origin" not in s.headers and "referer" not in s.headers, s
        assert s.headers["host"] == proxy_host, s
        if s.method != "GET":
            assert s.headers["content-type"] == "application/json", s
        assert s.status in (200, 409), s  # 409: the second session resuming the run


def test_a_name_given_to_host_is_accepted_and_addresses_need_no_flag() -> None:
    """`--host gpu-box.lan` answers to that name; `--host 0.0.0.0` or an address adds no name
    (every address is accepted); names are compared as browsers send them."""
    named = RequestGuard("GPU-Box.lan.", ["metrana.example.com", "[fd00::7]"])
    assert named.named == {"gpu-box.lan", "metrana.example.com"}
    assert named.describe() == "localhost, any IP address, gpu-box.lan, metrana.example.com"
    for host in ("gpu-box.lan:8787", "GPU-BOX.LAN", "metrana.example.com:443", "[fd00::7]:1"):
        assert named.check("GET", [(b"host", host.encode())]) is None, host
    for bind in ("0.0.0.0", "::", "[::1]", "127.0.0.1", "localhost"):
        assert RequestGuard(bind).named == frozenset(), bind
    assert RequestGuard("127.0.0.1", ["bücher.example"]).named == {"xn--bcher-kva.example"}


def test_grpc_calls_are_judged_by_their_authority(tmp_path: Path) -> None:
    """gRPC (HTTP/2, no Origin) passes under a name of the server; under another name it ends
    with PERMISSION_DENIED and the same message, and stores nothing."""
    import grpc
    from metrana_protobuf.ingestion.v1.svc import api_pb2, api_pb2_grpc
    from metrana_protobuf.ingestion.v1.types import run_definition_pb2

    proc, url = start_serve(tmp_path / "grpc.sqlite3", "--allowed-host", "metrana.example.com")
    target = url.removeprefix("http://")
    port = urlsplit(url).port

    def initialize(authority: str, run: str) -> list[Any]:
        request = api_pb2.InitializeRunLoggingRequest(
            run=run_definition_pb2.Run(workspace="ws", project="proj", run_name=run),
            create_project_if_missing=True)
        with grpc.insecure_channel(target, options=[("grpc.default_authority", authority)]
                                   ) as channel:
            stub = api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
            return list(stub.InitializeRunLogging(request, timeout=30))

    try:
        assert initialize(target, "by-address")
        assert initialize(f"metrana.example.com:{port}", "by-name")
        with pytest.raises(grpc.RpcError) as refused:
            initialize(f"evil.example:{port}", "rebound")
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "--allowed-host evil.example;" in refused.value.details()
        runs = httpx.get(url + "/api/runs").json()["runs"]
        assert sorted(r["run"] for r in runs) == ["by-address", "by-name"]
    finally:
        stop_serve(proc)

"""A wrong scheme is said as such, not as "cannot connect": ``https://`` to our plain-HTTP
``metrana serve``, and ``http://`` to a TLS port (one that closes the connection, as Python's
ssl servers do, and one that answers 400 in plain text, as nginx does), over real loopback
sockets. A server that closes connections without speaking TLS is not called a TLS server."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import metrana
from metrana.server import ServerInfo
from tests.helpers import wait_until

NAMES: dict[str, Any] = {"workspace_name": "ws", "project_name": "proj", "run_name": "scheme"}
PLAIN_400 = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/html\r\nContent-Length: 48\r\n"
             b"Connection: close\r\n\r\nThe plain HTTP request was sent to HTTPS port\r\n\r\n")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (the openssl command, no new
    dependency)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True, timeout=30)
    return cert, key


@contextmanager
def socket_server(handle: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback port whose connections ``handle(conn)`` serves one at a time; yields
    ``http://127.0.0.1:<port>``."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    handle(conn)
                except OSError:  # ssl.SSLError included: the client's mistake, not ours
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(10)
        listener.close()


def read_request(conn: socket.socket) -> None:
    """Read a plain-HTTP request to its end (metrana's bodies are uncompressed JSON on
    loopback), so that the client's write never races the close that follows."""
    request = b""
    while b"\r\n\r\n" not in request or not request.endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            return
        request += chunk


@contextmanager
def tls_server(certificate: tuple[Path, Path], plain_answer: bytes | None = None
               ) -> Iterator[str]:
    """A port that speaks only TLS. A plain-HTTP request is read and dropped, as a TLS
    handshake drops it, or, with ``plain_answer``, answered with it in plain text (as nginx
    does). Read first (a close racing the client's write of the body makes httpcore leave its
    body generator unfinished: a ResourceWarning, an error under filterwarnings=error)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def handle(conn: socket.socket) -> None:
        if conn.recv(1, socket.MSG_PEEK) != b"\x16":  # not a TLS handshake record
            read_request(conn)
            if plain_answer is not None:
                conn.sendall(plain_answer)
            return
        with context.wrap_socket(conn, server_side=True) as tls:
            if tls.recv(65536):
                tls.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")

    with socket_server(handle) as url:
        yield url


def said_for(messages: list[str], url: str) -> list[str]:
    return [m for m in messages if m.startswith("WARNING") and url in m]


def test_https_to_the_plain_http_server_says_use_http(live_server: ServerInfo,
                                                      loguru_messages: list[str]) -> None:
    """init() with https:// against `metrana serve`: one warning at once that names the
    mistake and the URL to use (no "is metrana serve running?"); points are kept."""
    wrong = live_server.url.replace("http://", "https://")
    run = metrana.session(**NAMES, ingestion_url=wrong, init_timeout=5)
    assert said_for(loguru_messages, wrong)[0] == (
        f"WARNING metrana: {wrong}: the server speaks plain HTTP, not https: the TLS handshake "
        f"failed; use ingestion_url={live_server.url!r}; points are kept and spooled "
        "meanwhile\n")
    run.log("loss", 1.0)
    assert run.close(strategy="CompleteAll", timeout=1).spooled == 1


@pytest.mark.parametrize("answer", [None, PLAIN_400], ids=["connection-closed", "plain-400"])
def test_http_to_a_tls_port_says_use_https(certificate: tuple[Path, Path], answer: bytes | None,
                                           loguru_messages: list[str]) -> None:
    """http:// against a TLS-only port: the client checks the port with a handshake of its
    own and says to use https://. A dropped connection is a warning (points are kept); a 400
    answer is the MetranaApiError init() raises, with the same advice."""
    with tls_server(certificate, answer) as url:
        right = url.replace("http://", "https://")
        advice = f"{url}: the server speaks https (TLS), not plain http; use ingestion_url={right!r}"
        if answer is None:
            run = metrana.session(**NAMES, ingestion_url=url, init_timeout=10)
            wait_until(lambda: bool(said_for(loguru_messages, url)))
            assert said_for(loguru_messages, url)[0] == (
                f"WARNING metrana: {advice}; points are kept and spooled meanwhile\n")
            run.close(strategy="Immediate")
        else:
            with pytest.raises(metrana.MetranaApiError) as raised:
                metrana.init(**NAMES, ingestion_url=url)
            assert str(raised.value) == f"{advice} (it answered HTTP 400)"
            assert raised.value.status == 400


def test_a_plain_server_that_drops_connections_is_not_called_tls(
        loguru_messages: list[str]) -> None:
    """The handshake check is what decides: a port that closes every connection without
    speaking TLS gets no advice to use https://."""
    with socket_server(read_request) as url:
        run = metrana.session(**NAMES, ingestion_url=url, init_timeout=0.5)
        run.close(strategy="Immediate")
    assert [m for m in loguru_messages if "https" in m or "TLS" in m] == []
    assert any(f"{url} has not answered within 0.5s" in m for m in loguru_messages)

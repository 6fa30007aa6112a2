"""A request cancelled during its TLS handshake closes its socket at once (see
metrana/_closing_backend.py), over a real loopback socket."""

from __future__ import annotations

import gc
import socket
import warnings

import trio

from metrana._transport import make_client


async def test_a_cancelled_tls_handshake_closes_its_socket() -> None:
    """The peer accepts and never answers the handshake; the request is cancelled (as
    close() cancels one still connecting). The peer then reads the end of the connection at
    once, and a garbage collection finds no socket left open to warn about."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        async with make_client(f"https://127.0.0.1:{port}", None) as client:
            with trio.move_on_after(0.5) as waited:
                await client.post("/v1/runs:update", content=b"{}")
            assert waited.cancelled_caught  # it was still in the handshake
            listener.settimeout(5)
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(5)
                received = b""
                while chunk := conn.recv(65536):  # the ClientHello, then the close
                    received += chunk
                assert received[:1] == b"\x16"  # a TLS handshake record was sent
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
        assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_the_clients_own_pools_are_wrapped() -> None:
    """The wrapping reaches httpx's pool (private attributes): a version of httpx or
    httpcore that moved them fails here, not silently in users' runs."""
    from metrana._closing_backend import _ClosingBackend

    client = make_client("https://127.0.0.1:1", None)
    assert isinstance(client._transport._pool._network_backend, _ClosingBackend)  # type: ignore[attr-defined]

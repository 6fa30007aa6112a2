"""A connection whose TLS handshake is cancelled is closed at once, not left to the GC.

httpcore (1.0.x) closes the TCP stream under a TLS handshake that *fails*, but not one that
is *cancelled* (it catches ``Exception``, and trio's ``Cancelled`` is not one). A client
cancels handshakes in ordinary use: ``close()`` ending a run while a request to an
``https://`` service is still connecting, a probe's time limit. The socket then stays open
until the garbage collector finds it, which warns ``ResourceWarning: unclosed <socket…>``
in whatever code happens to run then: an error under ``-W error`` (pytest's
``filterwarnings = error``), in a test that has nothing to do with it.

:func:`close_cancelled_handshakes` wraps the network backend of a client's connection pools
so that every stream it opens closes itself when ``start_tls`` ends in anything but a
handshake, cancellation included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx
import trio

__all__ = ["close_cancelled_handshakes"]


class _ClosingStream(httpcore.AsyncNetworkStream):
    """A TCP stream that closes itself if its TLS handshake does not finish."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._stream.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            return await self._stream.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            # Closing a TCP stream does not wait on the peer (no TLS goodbye yet): shielded,
            # it closes even while the cancellation that brought us here unwinds.
            with trio.CancelScope(shield=True):
                await self._stream.aclose()
            raise

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _ClosingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        return _ClosingStream(await self._backend.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        return _ClosingStream(await self._backend.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def close_cancelled_handshakes(client: httpx.AsyncClient) -> None:
    """Wrap the network backend of each of ``client``'s own connection pools (its default
    transport and any proxy mounts httpx made from the environment). A transport given by
    the caller is left as it is. httpx keeps the pool and
    httpcore the backend in private attributes: where a later version moved them, nothing is
    wrapped (and the test of this module fails), the client works as before."""
    for transport in [client._transport, *client._mounts.values()]:
        if not isinstance(transport, httpx.AsyncHTTPTransport):
            continue
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend) and not isinstance(
                backend, _ClosingBackend):
            pool._network_backend = _ClosingBackend(backend)  # type: ignore[union-attr]

"""A wrong scheme told apart from a service that is down: ``https://`` to a plain-HTTP
server, and ``http://`` to a TLS one.

``https://`` against a plain-HTTP port fails in the TLS handshake: the server answers the
client's hello with an HTTP error, which OpenSSL reads as a TLS record of an impossible version
("wrong version number"; "record layer failure" from OpenSSL 3.2; "unknown protocol" before
1.1). During the handshake that can mean nothing else, so it is said at once.

``http://`` against a TLS port gets no HTTP answer: the server closes the connection (Python's
ssl servers, hypercorn, uvicorn) or answers 400 in plain text (nginx, Go, Apache). Both have
other causes, so the client then asks the port itself, once: a TLS handshake of its own, which
sends nothing and checks no certificate (it only asks whether the port speaks TLS).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

import trio

__all__ = ["PLAIN_HTTP_SERVER", "PROBE_TIMEOUT", "TLS_SERVER", "answered_in_plain_http",
           "other_scheme", "speaks_tls", "wrong_scheme_advice"]

PLAIN_HTTP_SERVER = "the server speaks plain HTTP, not https: the TLS handshake failed"
TLS_SERVER = "the server speaks https (TLS), not plain http"
PROBE_TIMEOUT = 2.0

# OpenSSL's reasons for a first record that is not TLS at all (an HTTP status line).
_NOT_TLS = ("wrong version number", "record layer failure", "unknown protocol",
            "wrong_version_number", "record_layer_failure", "unknown_protocol")


def answered_in_plain_http(causes: Iterable[BaseException]) -> bool:
    """True when a handshake failed because the server answered in plain text (``causes``:
    the failed connection's exception and everything it was raised from)."""
    for cause in causes:
        if isinstance(cause, ssl.SSLError) and not isinstance(cause, ssl.SSLCertVerificationError):
            text = f"{cause.reason or ''} {cause}".lower()
            if any(reason in text for reason in _NOT_TLS):
                return True
    return False


def other_scheme(url: str) -> str:
    """``url`` with http and https swapped: the address the user meant."""
    scheme, rest = url.split("://", 1)
    return ("http" if scheme.lower() == "https" else "https") + "://" + rest


def wrong_scheme_advice(url: str, reason: str) -> str | None:
    """What to say when ``reason`` (from a failed request to ``url``) is a wrong scheme."""
    if reason not in (PLAIN_HTTP_SERVER, TLS_SERVER):
        return None
    return f"{url}: {reason}; use ingestion_url={other_scheme(url)!r}"


async def speaks_tls(url: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the host and port of an ``http://`` URL complete a TLS handshake. Never raises:
    anything but a finished handshake within ``timeout`` is False."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return False
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with trio.move_on_after(timeout):
        try:
            stream = await trio.open_tcp_stream(parts.hostname, parts.port or 80)
            tls = trio.SSLStream(stream, context, server_hostname=parts.hostname)
            try:
                await tls.do_handshake()
            finally:
                await trio.aclose_forcefully(tls)
        except (OSError, trio.BrokenResourceError, ValueError):
            return False
        return True
    return False

"""Who may talk to ``metrana serve``: the checks every request passes before any route sees it.

A server without an API key trusts whoever can reach it, which on loopback means the user's own
programs. But the user's browser reaches it too, on behalf of any page it has open, in two ways
this module closes:

- **DNS rebinding.** A page on ``evil.example`` whose name then re-resolves to 127.0.0.1 becomes
  same-origin with the server: it could read every run and write any. Its requests carry
  ``Host: evil.example:8787``, so a request is served only when its ``Host`` is a name of this
  server: ``localhost``, an IP address (an address cannot be re-resolved, and a browser sends
  one only to the address it names, which is then this server), the name given to ``--host``,
  or a name given with ``--allowed-host`` (a DNS name of a team server, a reverse proxy). The
  name is checked, not the port. A request without ``Host`` (HTTP/1.0) is served: browsers
  always send one, so its absence is a program.
- **Cross-site writes.** Any page may send a POST without asking first (a form, or
  ``fetch(url, {mode: "no-cors", method: "POST"})``) as long as its body is ``text/plain``, a
  form or multipart. Every method other than GET and HEAD is taken as a write, whatever its
  route (routes added later inherit this): it must carry one of :data:`WRITE_CONTENT_TYPES`,
  none of which a page may send without a CORS preflight, and this server answers none (it
  sends no CORS headers at all); and its ``Origin`` (or, without one, its ``Referer``), when
  present, must be the server's own: ``http(s)://`` and the ``Host`` the request was sent to.
  Programs (the client, the CLI, curl, gRPC clients) send no ``Origin``; the dashboard's own
  requests send its origin. ``Origin: null`` (a sandboxed frame, a page that hides its
  referrer) is foreign.

So GET and HEAD must never change anything: that is what lets them through.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

import attrs

__all__ = ["SAFE_METHODS", "WRITE_CONTENT_TYPES", "Refusal", "RequestGuard", "host_name", "machine_name"]

# Media types a write may carry: what metrana's clients send (JSON, sometimes gzip-encoded: the
# encoding is a separate header) and gRPC's. None is a CORS-safelisted type, so a web page can
# send none of them to another origin without a preflight.
WRITE_CONTENT_TYPES = frozenset({"application/json", "application/grpc", "application/grpc+proto"})
SAFE_METHODS = frozenset({"GET", "HEAD"})
LOOPBACK_NAMES = frozenset({"localhost"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABELS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")
_ECHO = 100  # characters of a refused header quoted back (it may come from anyone)
_REMEMBERED = 64  # accepted Host headers kept parsed


@attrs.frozen
class Refusal:
    """Why a request is not served: an HTTP status and a message the sender can act on."""

    status: int
    message: str


def host_name(text: str) -> str:
    """A host name as ``Host`` headers spell it: lower case, no brackets, no trailing dot.

    Raises:
        ValueError: not a bare host name or address (a scheme, a port, a path, a wildcard).
    """
    name = text.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    name = name.removesuffix(".")
    if _is_address(name):
        return name
    try:
        name = name.encode("idna").decode("ascii")  # what a browser sends for a Unicode name
    except UnicodeError:
        pass
    if not _LABELS.fullmatch(name):
        raise ValueError(f"not a host name: {text!r}; give the name as it appears in the URL "
                         "clients use, without scheme, port or path (e.g. metrana.example.com)")
    return name


class RequestGuard:
    """The allowed host names of one server, and :meth:`check`, which every request passes.

    Args:
        bind_host: the address or name the server listens on (``--host``); a name is accepted
            in ``Host``.
        allowed_hosts: more names to accept (``--allowed-host``), each checked by
            :func:`host_name`.

    Raises:
        ValueError: an allowed host that is not a host name.
    """

    def __init__(self, bind_host: str = "127.0.0.1", allowed_hosts: Iterable[str] = ()) -> None:
        named = {host_name(n) for n in allowed_hosts}  # an address among them: accepted anyway
        if bind_host.strip():
            named.add(host_name(bind_host))
        self.named = frozenset(n for n in named - LOOPBACK_NAMES if not _is_address(n))
        self._names = LOOPBACK_NAMES | self.named
        # Host headers seen and accepted, parsed: a client sends the same one every request.
        self._accepted: dict[bytes, tuple[str, int | None]] = {}

    def __repr__(self) -> str:
        return f"RequestGuard(named={sorted(self.named)!r})"

    def describe(self) -> str:
        """The names accepted in ``Host``, for the startup message and refusals."""
        return ", ".join(["localhost", "any IP address", *sorted(self.named)])

    def accepts(self, name: str) -> bool:
        return name in self._names or _is_address(name)

    def check(self, method: str, headers: Iterable[tuple[bytes, bytes]]) -> Refusal | None:
        """None when the request may go on to its route, else why not (403 or 415).

        ``headers`` as ASGI gives them: lower-case names, raw values.
        """
        raw_host: bytes | None = None
        origin: str | None = None
        referer: str | None = None
        content_type = b""
        for key, raw in headers:
            if key == b"host":
                raw_host = raw
            elif key == b"origin":
                origin = raw.decode("latin-1").strip()
            elif key == b"referer":
                referer = raw.decode("latin-1").strip()
            elif key == b"content-type":
                content_type = raw
        host = raw_host.decode("latin-1").strip() if raw_host else ""
        address = None
        if raw_host and host:
            address = self._accepted.get(raw_host)
            if address is None:
                address = _split_host(host)
                if address is None or not self.accepts(address[0]):
                    return self._foreign_host(host, address)
                if len(self._accepted) < _REMEMBERED:  # bounded: a sender writes any Host
                    self._accepted[raw_host] = address
        if method in SAFE_METHODS:
            return None
        source = origin if origin is not None else referer
        if source is not None and (address is None or not _same_origin(source, *address)):
            which = "Origin" if origin is not None else "Referer"
            own = f"http://{host}" if host else "unknown: the request has no Host"
            return Refusal(403, f"cross-origin {method:.20} refused: {which} {source[:_ECHO]!r} "
                                f"is not this server's own origin ({own[:_ECHO]}); metrana "
                                "serve takes writes only from programs (which send no Origin) "
                                "and from its own pages")
        media = content_type.decode("latin-1").split(";", 1)[0].strip().lower()
        if method != "OPTIONS" and media not in WRITE_CONTENT_TYPES:
            got = f"got {content_type.decode('latin-1')[:_ECHO]!r}" if content_type else "got none"
            return Refusal(415, f"{method:.20} needs 'Content-Type: application/json' ({got}); "
                                "other types are refused so that a web page cannot write here "
                                "without the browser asking first")
        return None

    def _foreign_host(self, host: str, address: tuple[str, int | None] | None) -> Refusal:
        hint = (f"start it with --allowed-host {address[0]}" if address
                else "use a name such as localhost")
        return Refusal(403, f"Host {host[:_ECHO]!r} is not a name of this server (it answers "
                            f"to {self.describe()}). If clients reach it by that name on "
                            f"purpose (a DNS name, a reverse proxy), {hint}; otherwise a web "
                            "page may be trying to reach it through DNS rebinding")


def machine_name() -> str | None:
    """This machine's host name, as a suggestion for ``--allowed-host`` (None if unusable)."""
    try:
        return host_name(socket.gethostname())
    except ValueError:
        return None


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``name[:port]`` or ``[v6][:port]`` as (normalized name, port); None when malformed."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        name, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text: str | None = rest[1:] if rest else None
    elif value.count(":") > 1:  # a bare IPv6 address: no port can be told apart
        name, port_text = value, None
    else:
        name, colon, after = value.partition(":")
        port_text = after if colon else None
    port = None
    if port_text is not None:
        if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
            return None
        port = int(port_text)
    return name.lower().removesuffix("."), port


def _same_origin(source: str, name: str, port: int | None) -> bool:
    """Whether an Origin (or a Referer URL) is ``http(s)://`` the request's own host and port."""
    parts = urlsplit(source)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.hostname:
        return False
    try:
        source_port = parts.port
    except ValueError:
        return False
    return (parts.hostname.removesuffix(".") == name
            and (source_port or default) == (port or default))


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True

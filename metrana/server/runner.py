"""Running the ingestion server: in the foreground (``metrana serve``), in a trio nursery
(tests), or on a background thread (the demo and synchronous callers); and saying in one line
why it could not start (a busy port and who holds it, a database it cannot use)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import attrs
import trio

from .._config import is_loopback_host
from .app import DEFAULT_MAX_BODY_BYTES, IngestApp
from .errors import DatabaseError, SchemaError
from .guard import RequestGuard
from .store import Store
from .store.database import sqlite_file_problem
from .throttle import FailureLimiter

__all__ = ["DEFAULT_DB_PATH", "OpenToOthers", "ServerInfo", "background_server",
           "database_problem", "serve", "startup_problem"]

DEFAULT_DB_PATH = Path.home() / ".metrana" / "metrana.sqlite3"


class OpenToOthers(RuntimeError):
    """``--host`` reaches other machines, and the server has no key to ask them for."""


@attrs.frozen
class ServerInfo:
    url: str
    db_path: Path | str  # a SQLite file, or the PostgreSQL URL without its password
    needs_key: bool = False  # it had a key when it started (its own, or in its database)


async def serve(
    *,
    db_path: str | Path = DEFAULT_DB_PATH,
    host: str = "127.0.0.1",
    port: int = 8787,
    api_key: str | None = None,
    allowed_hosts: Sequence[str] = (),
    allow_anonymous: bool = False,
    auth_failures: FailureLimiter | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or, with ``handle_signals``, until SIGINT/SIGTERM).

    ``db_path``: a SQLite file, or a ``postgresql://`` URL. Requests are served when their
    ``Host`` is ``localhost``, an IP address, ``host`` or one of ``allowed_hosts`` (see
    :mod:`metrana.server.guard`). ``api_key``: the server's own key (an admin key of every
    workspace); the keys of ``metrana keys create`` are in the database. Without either, the
    server is open to whoever reaches it: on a ``host`` other than loopback only with
    ``allow_anonymous``. ``auth_failures``: how many failed authentications an address may
    make in a window (default 10 a minute).

    Raises:
        ValueError: an allowed host that is not a host name (before anything starts).
        OpenToOthers: ``host`` is not loopback, the server has no key, and
            ``allow_anonymous`` is false.
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    guard = RequestGuard(host, allowed_hosts)
    store = Store(db_path)
    try:
        _check_open(host, api_key, allow_anonymous, store)
    except BaseException:
        store.close()
        raise
    app = IngestApp(store, api_key=api_key, max_body_bytes=max_body_bytes, guard=guard,
                    auth_failures=auth_failures)
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.loglevel = "WARNING"
    config.accesslog = None
    config.keep_alive_timeout = 75
    config.graceful_timeout = 5
    logging.getLogger("hypercorn.error").setLevel(logging.WARNING)
    shutdown = trio.Event()

    async def wait_for_signal() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                shutdown.set()
                return

    try:
        async with trio.open_nursery() as nursery:
            if handle_signals:
                nursery.start_soon(wait_for_signal)
            binds = await nursery.start(
                partial(hypercorn_serve, app, config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]
            )
            task_status.started(ServerInfo(url=binds[0], db_path=store.path or store.location,
                                           needs_key=not app.auth.is_open()))
            await shutdown.wait()
            # Let hypercorn finish in-flight requests (each is one committed transaction).
            nursery.cancel_scope.deadline = trio.current_time() + 10
    finally:
        store.close()


@contextmanager
def background_server(
    db_path: str | Path, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
    allowed_hosts: Sequence[str] = (), auth_failures: FailureLimiter | None = None,
) -> Iterator[ServerInfo]:
    """Run a server on its own thread for the duration of the ``with`` block."""
    started = threading.Event()
    info: list[ServerInfo] = []
    errors: list[BaseException] = []
    token: list[trio.lowlevel.TrioToken] = []
    stop: list[trio.CancelScope] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            stop.append(scope)
            token.append(trio.lowlevel.current_trio_token())
            async with trio.open_nursery() as nursery:
                info.append(
                    await nursery.start(
                        lambda task_status: serve(
                            db_path=db_path,
                            host=host,
                            port=port,
                            api_key=api_key,
                            allowed_hosts=allowed_hosts,
                            auth_failures=auth_failures,
                            task_status=task_status,
                        )
                    )
                )
                started.set()

    def target() -> None:
        try:
            trio.run(main)
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            errors.append(exc)
        finally:
            started.set()

    thread = threading.Thread(target=target, name="metrana-local-server", daemon=True)
    thread.start()
    started.wait()
    if errors:
        raise RuntimeError(f"local server failed to start: {errors[0]!r}") from errors[0]
    try:
        yield info[0]
    finally:
        trio.from_thread.run_sync(stop[0].cancel, trio_token=token[0])
        thread.join(timeout=30)


def _check_open(host: str, api_key: str | None, allow_anonymous: bool, store: Store) -> None:
    """Refuse to serve other machines without a key (or warn, when told to anyway)."""
    if is_loopback_host(host) or api_key or store.any_key():
        return
    if not allow_anonymous:
        raise OpenToOthers(
            f"refusing to listen on {host}, which other machines can reach, without an API key: "
            "anyone who reaches it could read and write every run. Make an admin key first "
            f"(metrana keys create --db {_shell(str(store.location))} --workspace '*' --role "
            "admin; then keys of their workspaces for the others), or set "
            "METRANA_SERVER_API_KEY; to serve it open anyway, add --allow-anonymous")
    print(f"WARNING: listening on {host}, which is reachable from other machines, without an "
          "API key (--allow-anonymous): anyone who can reach it can write to and read this "
          "database. Make keys with 'metrana keys create' to require them.", file=sys.stderr)


def _shell(word: str) -> str:
    import shlex

    return shlex.quote(word)


# ------------------------------------------------------------------------- diagnostics


def database_problem(db: Path) -> str | None:
    """One line when the SQLite file ``db`` cannot be the server's database, else None:
    asked before listening."""
    reason = sqlite_file_problem(db)
    if reason is None:
        return None
    return (f"cannot use {db} as the database ({reason}); pass --db with a file in a writable "
            "directory (default ~/.metrana/metrana.sqlite3, or set METRANA_DB)")


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)):
        for item in inner:
            yield from _leaves(item)
    else:
        yield exc


def startup_problem(exc: BaseException, host: str, port: int, db: str | Path) -> str | None:
    """One line for a startup failure a user can fix, or None (a bug: show the traceback)."""
    for leaf in _leaves(exc):
        if isinstance(leaf, KeyboardInterrupt):
            return "interrupted before it started"
        if isinstance(leaf, (DatabaseError, SchemaError, OpenToOthers)):
            return str(leaf)
        if isinstance(leaf, socket.gaierror):
            return (f"cannot listen on {host!r}: no such address ({leaf.strerror}); use "
                    "--host 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)")
        if isinstance(leaf, OverflowError):
            return f"{port} is not a port number: use 1-65535, or --port 0 to pick a free one"
        if isinstance(leaf, sqlite3.Error):
            return (f"cannot use {db} as the database ({leaf}); pass --db with a file in a "
                    "writable directory")
        if isinstance(leaf, OSError) and leaf.errno == errno.EADDRINUSE:
            holder = _port_holder(port)
            by = f" by {holder}" if holder else ""
            url = f"http://{host}:{port}"
            return (f"port {port} on {host} is already in use{by}. If that is a metrana serve, "
                    f"use it (ingestion_url={url}) or stop it; otherwise pick another port "
                    f"with --port {port + 1 if port < 65535 else 8787}, or --port 0 for any "
                    "free port")
        if isinstance(leaf, OSError) and leaf.errno == errno.EACCES:
            return (f"not allowed to listen on port {port} (ports below 1024 need root); use "
                    "--port 8787, or --port 0 to pick a free port")
        if isinstance(leaf, OSError) and leaf.errno == errno.EADDRNOTAVAIL:
            return (f"{host} is not an address of this machine; use --host 127.0.0.1 (this "
                    "machine only) or 0.0.0.0 (every interface)")
        if isinstance(leaf, OSError):
            return f"cannot listen on {host}:{port}: {leaf.strerror or leaf}"
    return None


def _port_holder(port: int) -> str | None:
    """Best effort (Linux): which process listens on ``port``, from /proc/net and /proc/*/fd.

    Only the pid and program name are shown, never the command line: it may hold secrets
    (``--api-key``). None when it cannot be told (not Linux, another user's process).
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == "0A":  # 0A = LISTEN
                with contextlib.suppress(ValueError):
                    if int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return f"pid {proc.name} ({_program(proc)})"
        except OSError:
            continue
    return "another process (one this user cannot inspect)"


def _program(proc: Path) -> str:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        argv = []
    words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    if "serve" in words and any(w == "metrana" or w.startswith("metrana") for w in words):
        return "metrana serve"
    try:
        return (proc / "comm").read_text().strip() or "unknown program"
    except OSError:
        return "unknown program"

"""Helpers for the tests of both stores: server processes, and writers made to overlap."""

from __future__ import annotations

import random
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.helpers import wait_until

__all__ = ["STORES", "QuietHandler", "in_background", "make_key", "plain_http_server",
           "start_serve", "stop_serve", "unused_port", "writers_held_at"]

STORES = ["sqlite", "postgresql"]  # the values of every store-parametrized fixture
# What schema version 5 added (API keys, dashboard sessions, writers), undone: with the meta
# version set back, a database as an older metrana left it (tests of upgrades).
UNDO_V5 = ("DROP TABLE run_writers", "DROP TABLE web_sessions", "DROP TABLE api_keys")
# What schema version 6 added (histograms and point clouds), undone: applied before UNDO_V5.
UNDO_V6 = ("DROP TABLE scatter_points", "DROP TABLE histogram_points",
           "DROP TABLE histogram_edges", "DROP TABLE value_series")
# What schema version 7 added (writer sessions, retired runs), undone: applied before UNDO_V6.
UNDO_V7 = ("DROP TABLE writer_sessions", "DROP TABLE retired_runs")

_PORT_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def unused_port() -> int:
    """A loopback port nothing listens on, for a server started there later or a connection
    that must be refused. Chosen below the kernel's ephemeral range: a port-0 bind (any other
    server, any client's source port) is never handed it meanwhile, and a client connecting to
    it cannot connect to itself (TCP self-connect needs the source and destination ports
    equal, and source ports come from that range)."""
    low = int(_PORT_RANGE.read_text().split()[0]) if _PORT_RANGE.exists() else 32768
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port below {low}")


def start_serve(db: str | Path, *extra: str, env: dict[str, str] | None = None,
                capture_stderr: bool = True) -> tuple[subprocess.Popen[str], str]:
    """``metrana serve --db DB --port 0`` in its own process; the process and its URL (the
    rest of its stdout, and its stderr if captured, are the caller's to read). A server that
    lives long and is never read from should not capture stderr: a full pipe would stop it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", str(db), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE if capture_stderr else None, text=True,
        env=env,
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        match = re.search(r"listening on (http://\S+)", line)
        if match:
            url = match.group(1)
            break
    if not url:
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"metrana serve did not start: {err}")
    return proc, url


def stop_serve(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.communicate(timeout=30)


@contextmanager
def writers_held_at(db_target: str, table: str, writers: int) -> Iterator[Callable[[], None]]:
    """On PostgreSQL, make concurrent writers really overlap: the test holds ``table`` in
    EXCLUSIVE mode (reads pass, writes and row locks wait), the caller starts ``writers``
    transactions, calls the yielded ``wait`` — which returns once PostgreSQL shows that many
    backends waiting on a lock (this table's, or a row lock one of them holds) — and leaving
    the block releases them into the race. On SQLite (one writer at a time by design) it holds
    nothing: the writers just start together."""
    if not db_target.startswith("postgresql://"):
        yield lambda: None
        return
    import psycopg

    with psycopg.connect(db_target) as holder:
        holder.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
        with psycopg.connect(db_target, autocommit=True) as watcher:

            def waiting() -> bool:
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()").fetchone()
                return row is not None and row[0] >= writers

            yield lambda: wait_until(waiting, timeout=30)
        holder.commit()


def in_background(*calls: Callable[[], Any]) -> Callable[[], list[Any]]:
    """Start the calls on threads now; the returned function joins them: results in order."""
    results: list[Any] = [None] * len(calls)

    def target(i: int) -> None:
        try:
            results[i] = calls[i]()
        except Exception as exc:  # noqa: BLE001 - returned to the test
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()

    def join() -> list[Any]:
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a writer hung"
        return results

    return join


class QuietHandler(BaseHTTPRequestHandler):
    """A stdlib request handler that does not log each request to stderr."""

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def plain_http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A small stdlib HTTP server on a loopback port, on its own thread: its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def make_key(db: str | Path, role: str, *workspaces: str, expired: bool = False,
             revoked: bool = False) -> tuple[str, str]:
    """A key made in the database ``db`` as ``metrana keys create --db`` makes it, without
    starting a process: the key and its prefix. ``expired``: it expired a second ago."""
    import time

    from metrana.server.access import OWNER
    from metrana.server.api_keys import KeyRecord, Role, hash_key, new_key
    from metrana.server.keys_admin import create_key
    from metrana.server.store import Store

    store = Store(db)
    try:
        if expired:  # no command makes a key out of date: the store keeps what it is given
            key, prefix = new_key()
            now = time.time_ns()
            assert store.add_key(KeyRecord(prefix, hash_key(key), "", Role.named(role),
                                           workspaces, now - 10**10, now - 10**9, None, None))
        else:
            key, record = create_key(store, OWNER, workspaces=list(workspaces), role=role)
            prefix = record.prefix
        if revoked:
            store.revoke_key(prefix)
    finally:
        store.close()
    return key, prefix

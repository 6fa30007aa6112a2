"""Running the ingestion server: in the foreground (``metrana serve``), in a trio nursery
(tests), or on a background thread (the demo and synchronous callers)."""

from __future__ import annotations

import logging
import signal
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
from .guard import RequestGuard
from .store import Store

__all__ = ["DEFAULT_DB_PATH", "ServerInfo", "background_server", "serve", "warn_if_public"]

DEFAULT_DB_PATH = Path.home() / ".metrana" / "metrana.sqlite3"


@attrs.frozen
class ServerInfo:
    url: str
    db_path: Path | str  # a SQLite file, or the PostgreSQL URL without its password


async def serve(
    *,
    db_path: str | Path = DEFAULT_DB_PATH,
    host: str = "127.0.0.1",
    port: int = 8787,
    api_key: str | None = None,
    allowed_hosts: Sequence[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    handle_signals: bool = False,
    task_status: trio.TaskStatus[ServerInfo] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until cancelled (or, with ``handle_signals``, until SIGINT/SIGTERM).

    ``db_path``: a SQLite file, or a ``postgresql://`` URL. Requests are served when their
    ``Host`` is ``localhost``, an IP address, ``host`` or one of ``allowed_hosts`` (see
    :mod:`metrana.server.guard`).

    Raises:
        ValueError: an allowed host that is not a host name (before anything starts).
    """
    from hypercorn.config import Config
    from hypercorn.trio import serve as hypercorn_serve

    guard = RequestGuard(host, allowed_hosts)
    store = Store(db_path)
    app = IngestApp(store, api_key=api_key, max_body_bytes=max_body_bytes, guard=guard)
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
            task_status.started(ServerInfo(url=binds[0], db_path=store.path or store.location))
            await shutdown.wait()
            # Let hypercorn finish in-flight requests (each is one committed transaction).
            nursery.cancel_scope.deadline = trio.current_time() + 10
    finally:
        store.close()


@contextmanager
def background_server(
    db_path: str | Path, *, host: str = "127.0.0.1", port: int = 0, api_key: str | None = None,
    allowed_hosts: Sequence[str] = (),
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


def warn_if_public(host: str, api_key: str | None) -> None:
    if not is_loopback_host(host) and not api_key:
        print(
            f"WARNING: listening on {host}, which is reachable from other machines, without "
            "--api-key: anyone who can reach it can write to and read this database. Set "
            "METRANA_SERVER_API_KEY to require a key.",
            file=sys.stderr,
        )

"""The server behind ``metrana import --db``: ``metrana serve`` in a process of its own.

The import then goes through the same engine and the same HTTP ingestion as with ``--url``
(batching, retries, the spool; idempotent writes), and the server parses on the other core
instead of sharing the importer's interpreter lock. It listens on a free loopback port and
stops when the import ends — also when the import is killed: it reads its standard input,
whose other end only the importer holds, and shuts down when that closes.

Its own key (``METRANA_SERVER_API_KEY``, drawn at random for each import and handed over in
the environment, never on a command line) lets the importer in also when the database has
keys: whoever can open the database may write to it anyway. Runs it creates are recorded as
written by ``server-key``.
"""

from __future__ import annotations

import gc
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

__all__ = ["local_server"]

_READY = "metrana-import-server "
_KEY = "METRANA_SERVER_API_KEY"


@contextmanager
def local_server(db: str) -> Iterator[tuple[str, str]]:
    """Start the server on ``db`` (a SQLite file or a postgresql:// URL); yields its URL and
    the key it takes.

    Raises:
        RuntimeError: it did not start (the message is the server's own).
    """
    key = secrets.token_urlsafe(32)
    proc = subprocess.Popen([sys.executable, "-m", "metrana._import.local_server", db],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, _KEY: key})
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line.startswith(_READY):
        proc.stdin.close()
        error = proc.stderr.read().strip().splitlines()
        proc.wait(timeout=30)
        raise RuntimeError(error[-1] if error else f"exit status {proc.returncode}")
    try:
        yield line[len(_READY):].strip(), key
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _main(db: str) -> None:
    import trio

    from ..server.runner import serve

    gc.set_threshold(200_000, 20, 50)  # as `metrana serve` does: bodies are acyclic

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(partial(serve, db_path=db, port=0,
                                               api_key=os.environ.pop(_KEY, None)))
            print(f"{_READY}{info.url}", flush=True)
            await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)  # until EOF
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except BaseException as exc:  # noqa: BLE001 - the importer prints it as its error
        inner = getattr(exc, "exceptions", None)
        while isinstance(inner, tuple) and len(inner) == 1:  # a (nested) exception group
            exc = inner[0]
            inner = getattr(exc, "exceptions", None)
        print(f"cannot start a server on {db}: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    _main(sys.argv[1])

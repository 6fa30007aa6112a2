"""A throwaway PostgreSQL cluster for the tests and benchmarks: real PostgreSQL, no mocks.

``initdb`` into a fresh temporary directory, listening only on a Unix socket inside it (no TCP
port to collide with or to expose), durability off (fsync, synchronous_commit: a test cluster
never survives a crash anyway), stopped and deleted at the end.

Where the binaries are missing: as root they are installed (``apt-get install postgresql``);
otherwise this fails with the command to run. A PostgreSQL test is never skipped.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user
(``runuser``); the test process connects through the socket as that user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PASSWORD", "PASSWORD_USER", "Cluster", "find_bindir", "throwaway_cluster"]

INSTALL = "apt-get update && apt-get install -y postgresql"
PASSWORD_USER = "metrana_pw"  # a role that must log in with a password (scram), for tests
PASSWORD = "s3cret-Pw-9"


def find_bindir() -> Path | None:
    """The newest installed PostgreSQL's bin directory ($METRANA_PG_BINDIR overrides)."""
    override = os.environ.get("METRANA_PG_BINDIR")
    if override:
        return Path(override)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def ensure_bindir() -> Path:
    """The binaries, installed first when missing and we are root."""
    bindir = find_bindir()
    if bindir is not None:
        return bindir
    if os.geteuid() != 0:
        raise RuntimeError(f"PostgreSQL server binaries (initdb, pg_ctl) are not installed; the "
                           f"PostgreSQL tests need them: sudo sh -c '{INSTALL}'")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["sh", "-c", INSTALL], check=True, env=env, stdout=subprocess.DEVNULL)
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"'{INSTALL}' ran but no initdb was found under /usr/lib/postgresql")
    return bindir


class Cluster:
    """One running throwaway cluster; databases are made and dropped per test."""

    def __init__(self, root: Path, bindir: Path, *, durable: bool = False) -> None:
        self.root = root
        self.bindir = bindir
        self.durable = durable
        self.data = root / "data"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        done = subprocess.run([*prefix, *argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}")

    @property
    def user(self) -> str:
        return "postgres"

    def url(self, dbname: str = "postgres", *, user: str | None = None,
            password: str | None = None) -> str:
        auth = user or self.user
        if password is not None:
            auth += f":{password}"
        return f"postgresql://{auth}@/{dbname}?host={self.root}"

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user,
                  "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
        hba = self.data / "pg_hba.conf"
        # First match wins: the password role must authenticate, everyone else is trusted.
        hba.write_text(f"local all {PASSWORD_USER} scram-sha-256\n" + hba.read_text())
        fast = "" if self.durable else "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(f"""
listen_addresses = ''
unix_socket_directories = '{self.root}'
max_connections = 200
{fast}""")
        self.resume()
        self.admin(f"CREATE ROLE {PASSWORD_USER} LOGIN CREATEDB PASSWORD '{PASSWORD}'")

    def resume(self) -> None:
        """Start the (initialised) server; returns once it accepts connections."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.root / "server.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: as a crash would; ``fast``: cleanly)."""
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode,
                      "-w", "stop")

    def admin(self, sql: str, dbname: str = "postgres") -> list[tuple[object, ...]]:
        """Run one statement as the superuser, outside a transaction; its rows."""
        import psycopg

        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cursor = conn.execute(sql.encode())
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self, name: str | None = None, owner: str | None = None) -> str:
        """A new empty database; its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        self.admin(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))
        return name

    def drop_database(self, name: str) -> None:
        self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_cluster(*, durable: bool = False) -> Iterator[Cluster]:
    """A running cluster for the duration of the block. ``durable``: PostgreSQL's default
    settings (fsync, synchronous commit), for benchmarks; tests turn durability off."""
    bindir = ensure_bindir()
    # Not under pytest's temporary directories: those are private to root (0700), and the
    # server runs as postgres. Short, too: a Unix socket path has a length limit.
    root = Path(tempfile.mkdtemp(prefix="metrana-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = Cluster(root, bindir, durable=durable)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)

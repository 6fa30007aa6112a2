"""The two databases behind one small interface: SQLite (embedded) and PostgreSQL (shared).

The store writes its SQL once, with ``?`` placeholders and statements both engines accept
(``ON CONFLICT … DO NOTHING``, ``RETURNING``); a :class:`Tx` runs it on either. What differs
lives here: how a write transaction starts (SQLite: one writer connection under a lock,
``BEGIN IMMEDIATE``; PostgreSQL: a pooled connection in READ COMMITTED, with row locks taken by
the store through :attr:`Database.for_update`), how readers get their connections, how many
rows are inserted at once (:meth:`Tx.insert_ids`: binary ``COPY`` on PostgreSQL), and which
failures are worth a retry (:class:`..errors.Unavailable`, HTTP 503).

psycopg runs synchronously, in trio's worker threads (its async mode needs asyncio).
"""

from __future__ import annotations

import errno
import functools
import queue
import random
import re
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import DatabaseError, Unavailable

__all__ = [
    "INSERT_METHODS",
    "Database",
    "PostgresDatabase",
    "SQLiteDatabase",
    "Tx",
    "is_postgres_url",
    "open_database",
    "redact",
    "sqlite_file_problem",
]

_SCHEMA_LOCK = 0x6D6574726E61  # "metrna": the advisory lock held while changing the schema
BUSY_TIMEOUT_S = 10.0  # SQLite: how long a connection waits for another one's lock
CONNECT_TIMEOUT_S = 5  # an unreachable PostgreSQL is reported this fast (unless the URL says)
RECONNECT_S = 10  # how long the pool follows one reconnection schedule (see PostgresDatabase)
# How PostgreSQL inserts a request's chunk rows (one per series): measured by
# scripts/bench_server.py --compare-insert; "copy" is the default.
INSERT_METHODS = ("copy", "executemany", "each")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


class Tx:
    """A cursor inside a transaction (or a read), with the store's few ways to use it."""

    dialect = "sqlite"

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def _sql(self, sql: str) -> str:
        return sql

    def one(self, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self._cursor.execute(self._sql(sql), args)
        row = self._cursor.fetchone()
        return tuple(row) if row is not None else None

    def all(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        self._cursor.execute(self._sql(sql), args)
        return [tuple(row) for row in self._cursor.fetchall()]

    def run(self, sql: str, args: Sequence[Any] = ()) -> int:
        self._cursor.execute(self._sql(sql), args)
        return int(self._cursor.rowcount)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many rows (PostgreSQL: pipelined, one round trip)."""
        if rows:
            self._cursor.executemany(self._sql(sql), rows)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``column`` is one of ``values``: SQL and its arguments. (SQLite: ``IN (?, …)``;
        PostgreSQL: ``= ANY(?)``, one statement whatever the count, so it stays prepared.)"""
        if not values:
            return "1 = 0", []
        return f"{column} IN ({', '.join('?' for _ in values)})", list(values)

    def next_ids(self, table: str, count: int) -> list[int]:
        """``count`` ids for new rows of ``table``, in increasing order. (SQLite: past the
        largest, safe under its single writer; PostgreSQL: from the table's sequence.)"""
        if count == 0:
            return []
        row = self.one(f"SELECT COALESCE(MAX(id), 0) FROM {table}")
        assert row is not None
        return list(range(int(row[0]) + 1, int(row[0]) + 1 + count))

    def insert_ids(self, table: str, columns: Sequence[tuple[str, str]],
                   rows: Sequence[Sequence[Any]]) -> list[int]:
        """Insert rows (``columns``: name and PostgreSQL type); their new ids, in order."""
        names = ", ".join(name for name, _ in columns)
        marks = ", ".join("?" for _ in columns)
        ids = []
        for row in rows:
            self._cursor.execute(
                self._sql(f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id"), row)
            ids.append(int(self._cursor.fetchone()[0]))
        return ids


@functools.lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class _PgTx(Tx):
    dialect = "postgresql"

    def __init__(self, cursor: Any, db: PostgresDatabase) -> None:
        super().__init__(cursor)
        self._db = db

    def _sql(self, sql: str) -> str:
        return _pg_sql(sql)

    def among(self, column: str, values: Sequence[Any]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(?)", [list(values)]

    def next_ids(self, table: str, count: int) -> list[int]:
        if count == 0:
            return []
        return [int(r[0]) for r in self.all(
            "SELECT nextval(pg_get_serial_sequence(?, 'id')) FROM generate_series(1, ?)",
            (table, count))]

    def insert_ids(self, table: str, columns: Sequence[tuple[str, str]],
                   rows: Sequence[Sequence[Any]]) -> list[int]:
        if not rows:
            return []
        method = self._db.insert_method
        if method == "each" or (method == "copy" and len(rows) == 1):
            return super().insert_ids(table, columns, rows)
        names = ", ".join(name for name, _ in columns)
        if method == "executemany":
            marks = ", ".join("%s" for _ in columns)
            self._cursor.executemany(
                f"INSERT INTO {table} ({names}) VALUES ({marks}) RETURNING id", rows,
                returning=True)
            ids = []
            while True:
                ids.append(int(self._cursor.fetchone()[0]))
                if not self._cursor.nextset():
                    return ids
        # Binary COPY: ids drawn from the table's own sequence first (COPY returns none).
        ids = self.next_ids(table, len(rows))
        with self._cursor.copy(f"COPY {table} (id, {names}) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", *(kind for _, kind in columns)])
            for row_id, row in zip(ids, rows, strict=True):
                copy.write_row((row_id, *row))
        return ids


class Database(ABC):
    dialect: str
    for_update: str  # appended to a SELECT that must lock the rows it reads
    description: str  # where the data is, for messages (never a password)

    @abstractmethod
    def write(self) -> Any:
        """A context manager: one transaction, committed on success, rolled back on error."""

    @abstractmethod
    def read(self) -> Any:
        """A context manager: a consistent read."""

    @abstractmethod
    def exclusive(self) -> Any:
        """A context manager: a write transaction no other server runs at the same time
        (schema creation and migrations)."""

    @abstractmethod
    def close(self) -> None: ...


class SQLiteDatabase(Database):
    """One file. WAL: readers never block the writer; one writer connection, under a lock."""

    dialect = "sqlite"
    for_update = ""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.description = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._use_wal()
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = [self._conn]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        return conn

    def _use_wal(self) -> None:
        """Switch the file to WAL, waiting as long as ``busy_timeout`` would.

        Switching takes the file's exclusive lock, and SQLite answers "database is locked" at
        once, without its busy handler, when another connection holds a lock at that moment:
        three servers opening a new file together failed ~6% of the time. So the switch is
        retried, with a short randomized pause, until the deadline.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    self._conn.close()
                    raise
            time.sleep(random.uniform(0.005, 0.05))

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                # Another process (a second server on this file) held the write lock for
                # longer than busy_timeout: a retry will do.
                raise Unavailable(f"{self.description} is busy ({exc})") from None
            try:
                yield Tx(self._conn.cursor())
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._connect()
            with self._lock:
                self._all.append(conn)
        try:
            conn.execute("BEGIN")
            try:
                yield Tx(conn.cursor())
            finally:
                conn.execute("COMMIT")
        finally:
            self._readers.put(conn)

    def exclusive(self) -> Any:
        return self.write()  # BEGIN IMMEDIATE: the one writer of the file

    def vacuum(self) -> None:
        """Rewrite the file without its free pages (after deletes), the WAL folded in first
        and emptied after, so that the disk gets the space back."""
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._conn.execute("VACUUM")
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all = []


def is_postgres_url(target: str | Path) -> bool:
    return str(target).startswith(("postgresql://", "postgres://"))


def redact(url: str) -> str:
    """A database URL without its password (in the user part or a ``password=`` parameter),
    also when the URL is malformed."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # e.g. an unbalanced "[" in the host: redact by pattern instead
        url = re.sub(r"(://[^/@:]*):[^@/]*@", r"\1:***@", url)
        return re.sub(r"([?&]password=)[^&]*", r"\1***", url)
    netloc = parts.netloc
    if password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.split(':', 1)[0]}:***@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key == "password" for key, _ in pairs):
            query = urlencode([(k, "***" if k == "password" else v) for k, v in pairs],
                              safe="/*")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _one_line(exc: BaseException, secret: str | None, url: str | None = None) -> str:
    """An error's message on one line, without the password (nor the URL that holds it:
    libpq quotes a URL it cannot parse)."""
    text = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    if url:
        text = text.replace(url, redact(url))
    if secret:
        text = text.replace(secret, "***")
    return text or type(exc).__name__


class PostgresDatabase(Database):
    """A PostgreSQL database shared by any number of servers: it is their only shared state.

    Writes run in READ COMMITTED: each statement sees what other servers committed before it,
    and the store's row locks (``SELECT … FOR UPDATE``, taken in id order) make two servers
    writing one series take turns. Reads run in REPEATABLE READ READ ONLY: the several queries
    of a chart answer from one snapshot.
    """

    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, max_connections: int = 8, insert_method: str = "copy"
                 ) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo
            from psycopg_pool import ConnectionPool
        except ImportError:  # pragma: no cover - part of the postgres extra
            raise DatabaseError("PostgreSQL needs psycopg: pip install 'metrana[postgres]'"
                                ) from None
        if insert_method not in INSERT_METHODS:
            raise ValueError(f"insert_method must be one of {INSERT_METHODS}")
        self.insert_method = insert_method
        self._psycopg = psycopg
        self.description = redact(url)
        try:
            params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.Error as exc:
            raise DatabaseError(f"{self.description} is not a valid PostgreSQL URL "
                                f"({_one_line(exc, None, url)}); expected "
                                "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE") from None
        secret = str(params["password"]) if params.get("password") else None
        params.setdefault("connect_timeout", str(CONNECT_TIMEOUT_S))
        params.setdefault("application_name", "metrana serve")
        conninfo = make_conninfo(**params)
        # One connection first: its error says why (refused, unknown database, bad password),
        # where a pool would only time out.
        try:
            psycopg.connect(conninfo).close()
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot connect to {self.description}: "
                                f"{_one_line(exc, secret, url)}") from None
        self._secret = secret
        # A connection is checked as it is taken (PostgreSQL may have restarted since); a
        # request waits at most CONNECT_TIMEOUT_S for one, then is answered 503. The pool's
        # reconnection backoff doubles without bound (1, 2, 4 … s) while no new attempt
        # starts: given up after RECONNECT_S, the next request starts a fresh one, so a server
        # serves again within seconds of PostgreSQL coming back, however long it was away.
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=max_connections, open=False,
                                    kwargs={"autocommit": False}, name="pgpool",
                                    check=ConnectionPool.check_connection,
                                    timeout=CONNECT_TIMEOUT_S, reconnect_timeout=RECONNECT_S)
        try:
            self._pool.open(wait=True, timeout=2 * CONNECT_TIMEOUT_S)
        except Exception as exc:  # noqa: BLE001 - say where, without the password
            self._pool.close()
            raise DatabaseError(f"cannot connect to {self.description}: "
                                f"{_one_line(exc, secret)}") from None

    @contextmanager
    def _transaction(self, *, read_only: bool) -> Iterator[Tx]:
        psycopg = self._psycopg
        try:
            with self._pool.connection() as conn:
                conn.isolation_level = (psycopg.IsolationLevel.REPEATABLE_READ if read_only
                                        else psycopg.IsolationLevel.READ_COMMITTED)
                conn.read_only = read_only
                # Binary results: bytea as bytes, not hex text twice its size to decode.
                with conn.transaction(), conn.cursor(binary=True) as cursor:
                    yield _PgTx(cursor, self)
        except psycopg.OperationalError as exc:
            # A dropped connection, a restarted server, a deadlock or serialization failure
            # (the transaction was rolled back): the client's retry will find things well.
            raise Unavailable(f"database {self.description}: {_one_line(exc, self._secret)}"
                              ) from None

    def write(self) -> Any:
        return self._transaction(read_only=False)

    def read(self) -> Any:
        return self._transaction(read_only=True)

    @contextmanager
    def exclusive(self) -> Iterator[Tx]:
        with self.write() as tx:
            tx.run("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            yield tx

    def close(self) -> None:
        self._pool.close()


def open_database(target: str | Path, *, insert_method: str = "copy") -> Database:
    """``postgresql://…`` (or ``postgres://…``) is PostgreSQL; a path is a SQLite file.

    Any other ``scheme://`` is refused rather than taken for a file name (a typo such as
    ``postgresq://`` would otherwise create a SQLite file in a directory named ``postgresq:``).
    """
    text = str(target)
    if is_postgres_url(text):
        return PostgresDatabase(text, insert_method=insert_method)
    scheme = _URL.match(text)
    if scheme:
        raise DatabaseError(f"{redact(text)}: unsupported database URL scheme "
                            f"{scheme.group(1)!r}; use postgresql://USER@HOST/DATABASE, "
                            "or a SQLite file path")
    return SQLiteDatabase(Path(text).expanduser())


def sqlite_file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a server's SQLite database (a directory, a file that cannot be
    created or written, a file that is not SQLite), or None. Asked before a server listens,
    so that the user reads one line instead of a failed request later."""
    try:
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, "is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=10, isolation_level=None)
        try:
            conn.execute("PRAGMA schema_version")  # reads the header: "file is not a database"
            conn.execute("BEGIN IMMEDIATE")  # needs write access
            conn.execute("ROLLBACK")
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        return exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return None

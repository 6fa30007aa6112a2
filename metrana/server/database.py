"""The two databases behind one small interface: SQLite (embedded) and PostgreSQL (shared).

The store writes its SQL once, with ``?`` placeholders and statements both engines accept
(``ON CONFLICT … DO NOTHING``, ``RETURNING``); a :class:`Tx` runs it on either. What differs
lives here: how a write transaction starts (SQLite: one writer connection under a lock,
``BEGIN IMMEDIATE``; PostgreSQL: a pooled connection, with row locks taken by the store through
:attr:`Database.for_update`), and how readers get their connections.

psycopg runs synchronously, in trio's worker threads (its async mode needs asyncio).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["Database", "PostgresDatabase", "SQLiteDatabase", "Tx", "open_database"]

_SCHEMA_LOCK = 0x6D6574726E61  # "metrna": the advisory lock held while changing the schema


class Tx:
    """A cursor inside a transaction (or a read), with the store's few ways to use it."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self._cursor = cursor
        self._pg = placeholder != "?"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._pg else sql

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
        if rows:
            self._cursor.executemany(self._sql(sql), rows)


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
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._readers: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = [self._conn]

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn.cursor(), "?")
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
                yield Tx(conn.cursor(), "?")
            finally:
                conn.execute("COMMIT")
        finally:
            self._readers.put(conn)

    def exclusive(self) -> Any:
        return self.write()  # BEGIN IMMEDIATE: the one writer of the file

    def close(self) -> None:
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all = []


def redact(url: str) -> str:
    """A database URL without its password."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class PostgresDatabase(Database):
    """A PostgreSQL database shared by any number of servers: it is their only shared state."""

    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, *, max_connections: int = 8) -> None:
        try:
            import psycopg
            from psycopg_pool import ConnectionPool
        except ImportError:  # pragma: no cover - part of the postgres extra
            raise RuntimeError("PostgreSQL needs psycopg: pip install 'metrana[postgres]'") from None
        self._psycopg = psycopg
        self.description = redact(url)
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                    kwargs={"autocommit": False}, name="metrana")
        try:
            self._pool.open(wait=True, timeout=15)
        except Exception as exc:  # noqa: BLE001 - say where, without the password
            self._pool.close()
            raise RuntimeError(f"cannot connect to {self.description}: {exc}") from None

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction():
            with conn.cursor() as cursor:
                yield Tx(cursor, "%s")

    @contextmanager
    def read(self) -> Iterator[Tx]:
        with self._pool.connection() as conn, conn.transaction():
            with conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                yield Tx(cursor, "%s")

    @contextmanager
    def exclusive(self) -> Iterator[Tx]:
        with self.write() as tx:
            tx.run("SELECT pg_advisory_xact_lock(?)", (_SCHEMA_LOCK,))
            yield tx

    def close(self) -> None:
        self._pool.close()


def open_database(target: str | Path) -> Database:
    """``postgresql://…`` (or ``postgres://…``) is PostgreSQL; anything else a SQLite file."""
    text = str(target)
    if text.startswith(("postgresql://", "postgres://")):
        return PostgresDatabase(text)
    return SQLiteDatabase(Path(text).expanduser())

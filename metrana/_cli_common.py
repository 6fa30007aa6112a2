"""What the ``metrana`` command's subcommands share (:mod:`._cli`, ``export --format
parquet``, ``import``): their one-line error, and which database they use by default.

A module of its own so that the subcommands living in other modules need not import the
command line's module, which imports them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

__all__ = ["KEY_ADVICE", "CLIError", "add_source_options", "check_database", "default_db", "is_url"]

# How a command of the CLI is given a key, as refusals say it.
KEY_ADVICE = "--api-key KEY or METRANA_API_KEY (environment variables do not show in 'ps')"


class CLIError(Exception):
    """A problem to print as one line; ``status`` 1 = it did not work, 2 = bad command line."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def add_source_options(cmd: argparse.ArgumentParser, *, db_help: str, url_help: str,
                       key_help: str, default: Any = None) -> None:
    """``--db`` or ``--url`` (one of them), and ``--api-key``: where a command reads or
    writes, declared once for every subcommand that takes them."""
    where = cmd.add_mutually_exclusive_group()
    where.add_argument("--db", default=default, metavar="PATH|URL", help=db_help)
    where.add_argument("--url", default=default, help=url_help)
    cmd.add_argument("--api-key", default=default, metavar="KEY", help=key_help)


def default_db() -> str:
    """$METRANA_SERVER_DB, else $METRANA_DB, else the default SQLite file."""
    from .server.runner import DEFAULT_DB_PATH

    return (os.environ.get("METRANA_SERVER_DB") or os.environ.get("METRANA_DB")
            or str(DEFAULT_DB_PATH))


def is_url(db: str) -> bool:
    return "://" in db


def check_database(db: Path) -> None:
    """Fail before listening when the database cannot be opened for writing."""
    from .server.runner import database_problem

    problem = database_problem(db)
    if problem is not None:
        raise CLIError(problem)

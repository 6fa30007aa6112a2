"""``metrana serve`` / ``runs`` / ``export`` with ``--db postgresql://...``, in real processes
against a real PostgreSQL that checks passwords: the password is never printed, and a database
that cannot be used is one line saying why."""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys

import pytest

from metrana.server import Store
from tests.pgcluster import PASSWORD, PASSWORD_USER, Cluster
from tests.server.test_cli import metrana, one_line, post_small_run
from tests.server.test_store import _execute, _snapshot
from tests.support import unused_port


def test_serve_runs_and_export_on_postgresql_never_print_the_password(
        pg_cluster: Cluster) -> None:
    """The database given as METRANA_SERVER_DB (a URL with a password, for a role that must
    use it): serve prints it with the password as ***, stores what it is sent, stops cleanly;
    runs and export (--db URL) read it back. The password is in no output."""
    url = pg_cluster.url(pg_cluster.create_database(owner=PASSWORD_USER), user=PASSWORD_USER,
                         password=PASSWORD)
    proc = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "METRANA_SERVER_DB": url})
    assert proc.stdout is not None
    printed = []
    for line in proc.stdout:
        printed.append(line)
        if "see what was stored" in line:
            break
    listening = re.search(r"listening on (http://\S+)", "".join(printed))
    assert listening, "".join(printed) + (proc.stderr.read() if proc.stderr else "")
    post_small_run(listening.group(1))
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    out = "".join(printed) + out
    assert proc.returncode == 0, err
    assert f"database postgresql://{PASSWORD_USER}:***@/" in out
    runs = metrana("runs", "--db", url)
    export = metrana("export", "ws/p/r", "--db", url)
    assert runs.returncode == 0 and export.returncode == 0, runs.stderr + export.stderr
    assert re.search(r"ws/p/r\s+-\s+\w+\s+.*\s+2\s+6", runs.stdout), runs.stdout
    rows = list(csv.DictReader(io.StringIO(export.stdout)))
    assert [(r["metric_name"], r["step"]) for r in rows] == [
        ("loss", str(i)) for i in range(5)] + [("reward", "10")]
    for text in (out, err, runs.stdout, runs.stderr, export.stderr):
        assert PASSWORD not in text


@pytest.mark.parametrize("case", ["wrong password", "no such database", "nothing listening",
                                  "unknown scheme", "malformed URL"])
def test_a_database_that_cannot_be_used_is_one_line_saying_why(pg_cluster: Cluster,
                                                              case: str) -> None:
    """serve and runs on a PostgreSQL URL that cannot work: exit status 1, one line naming
    the database (password as ***) and the reason, no traceback, no password."""
    url, reason = {
        "wrong password": (pg_cluster.url("postgres", user=PASSWORD_USER,
                                          password="wrong-pass-1"),
                           "password authentication failed"),
        "no such database": (pg_cluster.url("no_such_db", password=PASSWORD),
                             'database "no_such_db" does not exist'),
        "nothing listening": (f"postgresql://u:{PASSWORD}@127.0.0.1:{unused_port()}/db",
                              "Connection refused"),
        "unknown scheme": (f"mysql://u:{PASSWORD}@localhost/db",
                           "unsupported database URL scheme 'mysql'"),
        "malformed URL": (f"postgresql://u:{PASSWORD}@[::1/db", "not a valid PostgreSQL URL"),
    }[case]
    for command in (["serve", "--port", "0"], ["runs"]):
        done = metrana(*command, "--db", url, timeout=60)
        assert done.returncode == 1, done.stdout + done.stderr
        message = one_line(done.stderr)
        assert message.startswith(f"metrana {command[0]}: ") and reason in message, message
        assert PASSWORD not in done.stdout + done.stderr
        assert "wrong-pass-1" not in done.stdout + done.stderr


def test_serve_refuses_a_database_of_a_newer_metrana_in_one_line(db_target: str) -> None:
    """A database whose schema a newer metrana wrote: serve and runs say so in one line (exit
    status 1) and leave it as it was."""
    Store(db_target).close()
    _execute(db_target, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    before = _snapshot(db_target)
    for command in (["serve", "--port", "0"], ["runs"]):
        done = metrana(*command, "--db", db_target)
        assert done.returncode == 1
        message = one_line(done.stderr)
        assert "written by a newer metrana (schema version 99" in message, message
        assert "pip install -U metrana" in message
    assert _snapshot(db_target) == before


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql://u:pw-1@db:5432/m", "postgresql://u:***@db:5432/m"),
    ("postgresql://u:p@ss:w@db/m", "postgresql://u:***@db/m"),
    ("postgresql://u@/m?host=/run/pg&password=pw-1&sslmode=require",
     "postgresql://u@/m?host=/run/pg&password=***&sslmode=require"),
    ("postgresql://u:pw-1@[::1/m?password=pw-1", "postgresql://u:***@[::1/m?password=***"),
    ("postgresql://u@db/m", "postgresql://u@db/m"),
])
def test_database_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    """Wherever a database URL is printed: the password (in the user part, in a password=
    parameter, in a URL too malformed to parse) is replaced by ***, the rest kept."""
    from metrana.server.store.database import redact

    assert redact(url) == shown

"""The metrana command: serve, runs, export, import, sync, keys and demo.

Every failure a user can cause (a busy port, a wrong run name, a missing API key, a closed
pipe) is one line on stderr that says what is wrong and what to do, and a non-zero exit status
(1: it did not work, 2: the command line is wrong); a traceback means a bug in metrana.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import difflib
import gc
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from ._cli_common import (
    KEY_ADVICE,
    CLIError as _CLIError,
    add_source_options,
    check_database as _check_database,
    default_db as _default_db,
    is_url as _is_url,
)
from ._cli_keys import add_keys_parser, keys_command
from ._wire import json_number, number_from_json

if TYPE_CHECKING:
    from .server.guard import RequestGuard

__all__ = ["main"]

_DESCRIPTION = """\
metrana: metrics for ML and RL training loops, and a local server to send them to.

Start a local server with 'metrana serve', log to it from Python with
metrana.init(..., ingestion_url=<the URL it prints>), then look at what was stored with
'metrana runs' and 'metrana export'. 'metrana demo' does all of that once, as an example.
"""

_EPILOG = """\
environment:
  METRANA_SERVER_DB       database of serve/runs/export: a SQLite file or a postgresql:// URL
                          (default ~/.metrana/metrana.sqlite3)
  METRANA_DB              the same, when METRANA_SERVER_DB is not set
  METRANA_API_KEY         API key that runs/export/sync/keys send
  METRANA_SERVER_API_KEY  serve's own key: an admin key of every workspace
  METRANA_INGESTION_URL   where sync sends (default: the URL each run was logged to)
  METRANA_SPOOL_DIR       spool that sync reads (default ~/.metrana/spool)

'metrana COMMAND --help' says what each command reads and writes.
"""

_SERVE_HELP = """\
Run the local ingestion server until Ctrl-C or SIGTERM.

Reads and writes: the database --db (default $METRANA_SERVER_DB or $METRANA_DB, else
~/.metrana/metrana.sqlite3): a SQLite file, created if missing, or a PostgreSQL database,
--db postgresql://USER@HOST/DATABASE (its tables are created if missing; several servers may
share one). Each request is one transaction, so everything the server acknowledged is stored.
Prints: the URL to pass to metrana.init(ingestion_url=...), and the database (never its
password).

It listens on loopback (127.0.0.1) unless --host says otherwise. Keys: once 'metrana keys
create' has made one in its database, every request needs a key (read, write or admin, for
some workspaces); METRANA_SERVER_API_KEY in its environment is a key of its own, admin of
every workspace (preferred to --api-key, which every user of the machine sees in 'ps').
Clients send a key as api_key= or METRANA_API_KEY; the dashboard asks to sign in. Without any
key it is open to whoever reaches it, so on an address beyond loopback it refuses to start
unless --allow-anonymous.

It answers requests addressed to localhost, to an IP address, to the name given as --host, or
to a name given with --allowed-host (repeatable), and refuses others (403): a web page could
otherwise reach it through DNS rebinding. Writes (every method but GET and HEAD) need
'Content-Type: application/json' and no Origin header but the server's own, so that no web
page can write to it.
"""

_READ_SOURCE_HELP = """\
Reads: the database --db (a SQLite file or a postgresql:// URL; default $METRANA_SERVER_DB or
$METRANA_DB, else ~/.metrana/metrana.sqlite3), or a running server's read API with --url.
A server with keys needs one here too (a read key shows its workspaces' runs only):
--api-key KEY, or METRANA_API_KEY in the environment (preferred: arguments show in 'ps').
"""

_RUNS_HELP = "List the stored runs with their state, tags, series and point counts.\n\n" \
    + _READ_SOURCE_HELP + """\
Writes: a table to stdout, one run a line, named WORKSPACE/PROJECT/RUN as 'metrana export'
takes it. Changes nothing. A run's STATUS is running (its client is logging), finished
(closed) or crashed (not closed, and not heard from for the server's --heartbeat-timeout).

'metrana runs delete RUN...' and 'metrana runs rename RUN NEW_NAME' change runs.
"""

_DELETE_HELP = """\
Delete runs and every point stored for them, for good.

Asks for confirmation, naming each run with its series and point counts, unless --yes. Works
on the database --db (default $METRANA_SERVER_DB or $METRANA_DB, else
~/.metrana/metrana.sqlite3) or through a running server with --url (and its API key).
A client still logging to a deleted run has its points refused (HTTP 410, counted as rejected).

Disk space: PostgreSQL reuses the rows' space at once. A SQLite file keeps its size and reuses
the freed pages for new points; --compact rewrites it (VACUUM) to give the space back to the
disk, which takes a while on a large file and makes writers wait meanwhile.
"""

_RENAME_HELP = """\
Rename a run (its points, series, config and tags stay). Fails if the project already has a
run of the new name. A client still logging under the old name has its points refused
(HTTP 410): init() with the new name to go on logging.
"""

_EXPORT_HELP = "Write every point of one run as CSV or JSON lines, or runs as Parquet.\n\n" \
    + _READ_SOURCE_HELP + """\
Writes: the points to stdout, or to the file -o (created only once the export succeeded).
Changes nothing in the database.

RUN is the name 'metrana runs' prints (workspace/project/run, even when a name contains '/').
If two runs print the same, name one with --workspace, --project and --run instead.

--format parquet (pip install 'metrana[query]'): typed columns (int64 steps, float64 values,
timestamp[ns, UTC], a labels/<key> column per label). RUN -o FILE writes one run;
WORKSPACE/PROJECT -o DIR writes a file per run of the project into DIR, and
WORKSPACE/PROJECT -o FILE.parquet all of them into one file (a 'run' column tells them apart).
"""

_IMPORT_HELP = """\
Import runs from another tracker: every scalar of a TensorBoard log directory, or every metric
of an MLflow tracking store, through the same engine as metrana.log().

Reads: the source. Writes: a run per source run into --url (a running 'metrana serve'), or into
the database --db (a SQLite file or a postgresql:// URL, written through a server of the
import's own on a free loopback port; default $METRANA_SERVER_DB, $METRANA_DB or
~/.metrana/metrana.sqlite3), in project --project of workspace --workspace.

Running it again stores nothing twice: runs are matched by their import/source attribute, and a
run imported before continues after its last stored point (an interrupted import completes).
Prints a progress bar while it works (on a terminal) and a table of runs, series, points and
what was skipped (TensorBoard histograms until metrana stores them, images, audio, text).
"""

_SYNC_HELP = """\
Deliver the points waiting in the spool: runs logged with mode="offline", or points a run
could not deliver before it ended (the service was down, close() timed out).

Reads: the spool at PATH (default $METRANA_SPOOL_DIR, else ~/.metrana/spool).
Sends: each run's points to --url (default $METRANA_INGESTION_URL, else the URL the run was
logged to), creating the run if needed. A non-loopback service needs an API key: --api-key
KEY or METRANA_API_KEY (preferred: arguments show in 'ps').
Deletes: each spool segment once every point in it was answered. Running sync twice, or
again after an interruption, stores each point once.
"""

_DEMO_HELP = """\
Log a short ML run and a short RL run, print what the server stored, and what to run next.

Writes: the runs into the database --db (default ~/.metrana/demo.sqlite3, kept so that you
can look at it afterwards), through a local server started on a free loopback port for the
duration of the demo; or, with --url, into that running server instead.
"""


def _version() -> str:
    from . import __version__

    return f"metrana {__version__}"


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = _Parser(prog="metrana", description=_DESCRIPTION, epilog=_EPILOG,
                     formatter_class=raw)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the ingestion server (SQLite or PostgreSQL)",
                           description=_SERVE_HELP, formatter_class=raw)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                       help="also answer requests addressed to NAME (a DNS name of this server, "
                            "a reverse proxy's); repeatable")
    serve.add_argument("--port", type=_port, default=8787,
                       help="port (default 8787; 0 picks a free one and prints it)")
    serve.add_argument("--db", default=None, metavar="PATH|URL",
                       help="SQLite database file, or postgresql://USER@HOST/DATABASE (default "
                            "$METRANA_SERVER_DB, $METRANA_DB or ~/.metrana/metrana.sqlite3)")
    serve.add_argument("--api-key", default=None, metavar="KEY",
                       help="the server's own key (an admin key of every workspace); prefer "
                            "METRANA_SERVER_API_KEY, which 'ps' does not show")
    serve.add_argument("--max-auth-failures", type=_positive, default=10, metavar="N",
                       help="refused keys an address may send per minute before it must wait "
                            "(HTTP 429; default 10)")
    serve.add_argument("--allow-anonymous", action="store_true",
                       help="with --host beyond loopback and no key at all, serve anyway, open "
                            "to anyone who can reach it (refused otherwise)")

    serve.add_argument("--heartbeat-timeout", type=_seconds, default=120.0, metavar="SECONDS",
                       help="a run not closed whose client was not heard from for this long is "
                            "shown as crashed (default 120; clients send a heartbeat every 30 s)")

    def source_options(cmd: argparse.ArgumentParser, default: Any = None) -> None:
        add_source_options(
            cmd, default=default,
            db_help="this SQLite file or postgresql:// database (default $METRANA_SERVER_DB, "
                    "$METRANA_DB or ~/.metrana/metrana.sqlite3)",
            url_help="the server running at URL instead",
            key_help="API key of a server started with one (default $METRANA_API_KEY)")

    for name, summary, description in (
            ("runs", "list, delete or rename stored runs", _RUNS_HELP),
            ("export", "write runs as CSV, JSON lines or Parquet", _EXPORT_HELP)):
        cmd = sub.add_parser(name, help=summary, description=description, formatter_class=raw)
        source_options(cmd)
        if name == "runs":
            actions = cmd.add_subparsers(dest="action", metavar="ACTION")
            delete = actions.add_parser("delete", help="delete runs and their points",
                                        description=_DELETE_HELP, formatter_class=raw)
            delete.add_argument("runs", nargs="+", metavar="RUN",
                                help="WORKSPACE/PROJECT/RUN, as 'metrana runs' prints it")
            delete.add_argument("-y", "--yes", action="store_true",
                                help="do not ask for confirmation")
            delete.add_argument("--compact", action="store_true",
                                help="SQLite: give the space back to the disk afterwards (VACUUM)")
            rename = actions.add_parser("rename", help="rename a run",
                                        description=_RENAME_HELP, formatter_class=raw)
            rename.add_argument("run", metavar="RUN",
                                help="WORKSPACE/PROJECT/RUN, as 'metrana runs' prints it")
            rename.add_argument("new_name", metavar="NEW_NAME", help="the run's new name")
            for action in (delete, rename):  # also after the action: runs delete X --db F
                source_options(action, argparse.SUPPRESS)
        if name == "export":
            cmd.add_argument("run", metavar="RUN", nargs="?",
                             help="WORKSPACE/PROJECT/RUN, as 'metrana runs' prints it (or "
                                  "WORKSPACE/PROJECT: every run, with --format parquet)")
            cmd.add_argument("--format", choices=("csv", "jsonl", "parquet"), default="csv",
                             help="csv (default), jsonl (one JSON object a line) or parquet")
            cmd.add_argument("-o", "--output", type=Path, default=None, metavar="FILE",
                             help="write to FILE (default stdout); parquet: a file, or for a "
                                  "whole project a directory (a file per run) or FILE.parquet")
            by_part = cmd.add_argument_group(
                "naming the run part by part (instead of RUN, when 'metrana runs' shows a name "
                "twice)")
            by_part.add_argument("--workspace", default=None)
            by_part.add_argument("--project", default=None)
            by_part.add_argument("--run", dest="run_name", default=None, metavar="RUN_NAME")

    importer = sub.add_parser("import", help="import runs from TensorBoard or MLflow",
                              description=_IMPORT_HELP, formatter_class=raw)
    sources = importer.add_subparsers(dest="source", required=True, metavar="SOURCE")
    tensorboard = sources.add_parser(
        "tensorboard", help="every run directory under a TensorBoard log directory",
        description=_IMPORT_HELP, formatter_class=raw)
    tensorboard.add_argument("logdir", metavar="LOGDIR",
                             help="the log directory (each directory under it holding "
                                  "events.out.tfevents.* files is a run)")
    mlflow = sources.add_parser("mlflow", help="every run of an MLflow tracking store",
                                description=_IMPORT_HELP, formatter_class=raw)
    mlflow.add_argument("--tracking-uri", required=True, metavar="URI",
                        help="the MLflow tracking URI: a path or file:///…/mlruns, "
                             "sqlite:///…, http://…")
    mlflow.add_argument("--experiment", action="append", default=None, metavar="NAME",
                        help="only this experiment (repeat for several; default: all)")
    for cmd in (tensorboard, mlflow):
        cmd.add_argument("--workspace", default=None,
                         help="the workspace to import into (default 'imported')")
        cmd.add_argument("--project", default=None,
                         help="the project to import into (default: the log directory's name; "
                              "'mlflow' for MLflow)")
        where = cmd.add_mutually_exclusive_group()
        where.add_argument("--url", default=None,
                           help="log to the metrana server running at URL")
        where.add_argument("--db", default=None, metavar="PATH|URL",
                           help="write to this SQLite file or postgresql:// database (default "
                                "$METRANA_SERVER_DB, $METRANA_DB or ~/.metrana/metrana.sqlite3)")
        cmd.add_argument("--api-key", default=None, metavar="KEY",
                         help="API key of a server started with one (default $METRANA_API_KEY)")

    add_keys_parser(sub, _Parser)

    sync = sub.add_parser("sync", help="deliver spooled points (offline runs, outages)",
                          description=_SYNC_HELP, formatter_class=raw)
    sync.add_argument("path", nargs="?", default=None, metavar="PATH",
                      help="a run's spool directory or one above (default: the whole spool)")
    sync.add_argument("--url", default=None,
                      help="send to this service (default $METRANA_INGESTION_URL, else the "
                           "URL each run was logged to)")
    sync.add_argument("--api-key", default=None, metavar="KEY",
                      help="API key for the service (default $METRANA_API_KEY)")

    demo = sub.add_parser("demo", help="log an example ML and RL run and show what was stored",
                          description=_DEMO_HELP, formatter_class=raw)
    where = demo.add_mutually_exclusive_group()
    where.add_argument("--db", type=Path, default=None, metavar="PATH",
                       help="database for the demo's local server (default ~/.metrana/demo.sqlite3)")
    where.add_argument("--url", default=None, help="log to the server running at URL instead")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``metrana`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "runs":
            if args.action == "delete":
                return _delete(args)
            if args.action == "rename":
                return _rename(args)
            return _runs(args)
        if args.command == "export":
            return _export(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "keys":
            return keys_command(args)
        if args.command == "import":
            from ._import.command import run_import

            return run_import(args)
        if args.command == "demo":
            from ._demo import DEFAULT_DEMO_DB, run_demo

            db = (args.db or DEFAULT_DEMO_DB).expanduser()
            if args.url is None:
                _check_database(db)
            return run_demo(args.url, db)
    except _CLIError as exc:
        print(f"metrana {args.command}: {exc}", file=sys.stderr)
        return exc.status
    except BrokenPipeError:
        # The reader went away (`metrana export ... | head`): stop quietly, as other tools do.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # what a shell reports for a process ended by SIGPIPE
    except KeyboardInterrupt:
        print(f"metrana {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


def _seconds(text: str) -> float:
    """argparse type of a duration in seconds (> 0)."""
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return seconds


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _port(text: str) -> int:
    """argparse type of --port: a clear message instead of bind()'s OverflowError later."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{port} is not a port number: use 1-65535, or 0 to pick a free one")
    return port


# ------------------------------------------------------------------------------- sync


def _sync(args: argparse.Namespace) -> int:
    from ._exceptions import MetranaError
    from ._sync import sync

    def progress(message: str) -> None:
        print(f"metrana sync: {message}", file=sys.stderr, flush=True)

    try:
        report = sync(args.path, ingestion_url=args.url, api_key=args.api_key, progress=progress)
    except KeyboardInterrupt:
        raise _CLIError("interrupted; what was not delivered stays in the spool: run metrana "
                        "sync again to deliver it (no point is stored twice)", status=130) from None
    except MetranaError as exc:
        if args.path is None and str(exc).startswith("no spool at"):
            print(f"nothing to sync: {exc} (points are spooled there when a run cannot "
                  "deliver them, or with mode=\"offline\")")
            return 0
        raise _CLIError(str(exc)) from None
    if report.runs == 0 and not report.errors:
        from ._config import DEFAULT_SPOOL_DIR

        root = args.path or os.environ.get("METRANA_SPOOL_DIR") or DEFAULT_SPOOL_DIR
        print(f"nothing to sync: no spooled points under {root}")
        return 0
    print(f"synced {report.runs} run(s): {report.delivered:,} points delivered, "
          f"{report.rejected:,} rejected, {report.damaged_records} damaged record(s) skipped, "
          f"{report.segments_in_use} segment(s) in use by a running logger")
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)
    if report.errors:
        print("what was not delivered stays in the spool; run metrana sync again once the "
              "problem is fixed", file=sys.stderr)
    return 0 if not report.errors else 1


# ------------------------------------------------------------------------------ serve


def _serve(args: argparse.Namespace) -> int:
    import trio

    from ._config import is_loopback_host
    from .server.guard import RequestGuard
    from .server.runner import serve, startup_problem
    from .server.throttle import FailureLimiter

    try:
        guard = RequestGuard(args.host, args.allowed_host)
    except ValueError as exc:
        raise _CLIError(f"--allowed-host: {exc}", status=2) from None
    db: str | Path = args.db or _default_db()
    if not _is_url(str(db)):
        db = Path(db).expanduser()
    api_key = args.api_key or os.environ.get("METRANA_SERVER_API_KEY") or None
    if args.api_key:
        print("metrana serve: note: --api-key is visible to other users in 'ps'; prefer "
              "METRANA_SERVER_API_KEY=... metrana serve", file=sys.stderr)
    if isinstance(db, Path):
        _check_database(db)
    # A request body parses into ~10 objects a point, all acyclic and freed by reference
    # counting; the default collector thresholds would walk them hundreds of times a request.
    # (Only in the server's own process: the client library never touches the collector.)
    gc.set_threshold(200_000, 20, 50)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            info = await nursery.start(
                lambda task_status: serve(
                    db_path=db,
                    host=args.host,
                    port=args.port,
                    api_key=api_key,
                    allowed_hosts=args.allowed_host,
                    allow_anonymous=args.allow_anonymous,
                    auth_failures=FailureLimiter(args.max_auth_failures),
                    handle_signals=True,
                    heartbeat_timeout_s=args.heartbeat_timeout,
                    task_status=task_status,
                )
            )
            print(f"metrana serve: listening on {info.url}", flush=True)
            if guard.named or not is_loopback_host(args.host):
                print(f"metrana serve: {_names_accepted(guard, info.url)}", flush=True)
            print(f"metrana serve: database {info.db_path}", flush=True)
            print(f"metrana serve: clients use ingestion_url={info.url}"
                  + (" and an api_key" if info.needs_key else "")
                  + " (the official client metrana>=1.11 too: gRPC on the same port)", flush=True)
            if not info.needs_key:
                print("metrana serve: no keys, so every request is served ('metrana keys "
                      "create' makes the first; from then on each request needs one)",
                      flush=True)
            key = "METRANA_API_KEY=<the key> " if info.needs_key else ""
            print(f"metrana serve: see what was stored: open {info.url}/ in a browser, or "
                  f"{key}metrana runs --url {info.url}; stop with Ctrl-C", flush=True)
            hint = docs_hint()
            if hint is not None:
                print(f"metrana serve: {hint}", flush=True)

    try:
        trio.run(main)
    except BaseException as exc:  # noqa: BLE001 - a known startup problem becomes one line
        problem = startup_problem(exc, args.host, args.port, db)
        if problem is None:
            raise
        raise _CLIError(problem) from None
    print("metrana serve: stopped; all acknowledged data is committed", flush=True)
    return 0


def docs_hint(package: Path | None = None) -> str | None:
    """Where the guides are, for a source checkout only (``mkdocs.yml`` beside the package):
    the docs are built from the repository, offline, so an installed wheel has nothing local to
    point at, and a hint that needs the internet would be no help on a cluster node."""
    root = (package or Path(__file__).resolve().parent).parent
    if not (root / "mkdocs.yml").is_file() or not (root / "docs").is_dir():
        return None
    return (f"guides: {root / 'docs'} (as a site: pip install -e '.[docs]' && mkdocs serve, "
            f"in {root})")


def _names_accepted(guard: RequestGuard, url: str) -> str:
    """Which names clients may put in their URL, and how to add one (``--host`` not loopback)."""
    from .server.guard import machine_name

    text = f"answers requests addressed to {guard.describe()}"
    name = machine_name()
    if name is None or guard.accepts(name):
        return text + "; add others with --allowed-host NAME"
    port = url.rsplit(":", 1)[-1]
    return (text + f"; to reach it as http://{name}:{port} (or by another name), start it with "
                   f"--allowed-host {name}")


# ------------------------------------------------------------------------ runs / export


class _Reader:
    """Reads runs through the transports ``metrana.query`` uses (:mod:`._read_transport`):
    the database opened in this process (``--db``), or a server's read API (``--url``). Both
    answer the same routes alike (:mod:`.server.read_api`), so what follows is the same code
    either way."""

    def __init__(self, db: str | None, url: str | None, api_key: str | None) -> None:
        from ._read_transport import HttpTransport, LocalTransport, Transport

        self._url = url.rstrip("/") if url else None
        self._api_key = api_key or os.environ.get("METRANA_API_KEY") or None
        self._transport: Transport
        if self._url is None:
            from ._read_transport import MetranaQueryError
            from .server.store.database import redact

            target = db or _default_db()
            if _is_url(target):
                where = redact(target)
            else:
                path = Path(target).expanduser()
                if not path.exists():
                    raise _CLIError(f"no database at {path}: start 'metrana serve' (it creates "
                                    "it), or pass --db PATH or --url URL")
                if path.is_dir():
                    raise _CLIError(f"{path} is a directory; pass --db with the database file")
                target = where = str(path)
            try:
                self._transport = LocalTransport(target)
            except MetranaQueryError as exc:
                raise _CLIError(str(exc)) from None
            except (OSError, sqlite3.Error) as exc:
                raise _CLIError(f"cannot read {where} as a metrana database: {exc}") from None
            self.where = f"database {where}"
            self.source = f"--db {_shell(where)}"
        else:
            self._transport = HttpTransport(self._url, self._api_key, timeout=60,
                                            key_advice=KEY_ADVICE)
            self.where = f"the server at {self._url}"
            self.source = f"--url {_shell(self._url)}"

    def _call(self, route: str, body: dict[str, Any], *, missing_ok: bool = False) -> Any:
        """The answer of a read route; None for a run or series that is not there, if
        ``missing_ok`` (the caller says what was not found)."""
        from ._read_transport import MetranaQueryError

        try:
            return self._transport.call(route, body)
        except MetranaQueryError as exc:
            if exc.status == 404 and missing_ok and "no query route" not in str(exc):
                return None
            if exc.status in (401, 403):  # which key, what to do (._auth_refusal)
                raise _CLIError(f"{self._url}: {exc}") from None
            if self._url is None:
                raise _CLIError(str(exc)) from None
            if exc.status is None:  # never answered
                raise _CLIError(f"{exc}; is 'metrana serve' running there? It prints its URL "
                                "when it starts") from None
            raise _CLIError(f"{exc}; is {self._url} a metrana server?") from None

    def close(self) -> None:
        self._transport.close()

    def manage(self, route: str, body: dict[str, Any]) -> Any:
        """The answer of a change route (delete, rename); its refusal as a _CLIError."""
        from ._read_transport import MetranaQueryError

        try:
            return self._transport.manage(route, body)
        except MetranaQueryError as exc:
            if exc.status == 401:
                self._call("all_runs", {})  # says what to do about the key
            raise _CLIError(str(exc)) from None

    def runs(self) -> list[dict[str, Any]]:
        return list(self._call("all_runs", {})["runs"])

    def detail(self, workspace: str, project: str, run: str) -> dict[str, Any] | None:
        """The run with its series, or None when it does not exist."""
        found = self._call("run", {"workspace": workspace, "project": project, "run": run},
                           missing_ok=True)
        return dict(found) if found is not None else None

    def points(self, detail: dict[str, Any]) -> Iterator[dict[str, Any]]:
        names = {"workspace": detail["workspace"], "project": detail["project"],
                 "run": detail["run"]}
        for series in detail["series"]:
            identity = {k: series[k] for k in
                        ("kind", "metric_name", "scale", "labels", "environment_id", "episode")}
            answer = self._call("series_points", {**names, "series_id": series["id"]},
                                missing_ok=True)
            if answer is None:
                raise _CLIError(f"run {_label(detail)} changed while it was exported "
                                f"(series {series['id']} is gone); export it again")
            for point in answer["points"]:
                value = point["value"]
                if isinstance(value, str):
                    point["value"] = number_from_json(value)
                yield {**identity, **point}


def _label(run: dict[str, Any]) -> str:
    """How ``metrana runs`` prints a run, and how ``metrana export`` finds it."""
    return f"{run['workspace']}/{run['project']}/{run['run']}"


def _runs(args: argparse.Namespace) -> int:
    reader = _Reader(args.db, args.url, args.api_key)
    try:
        runs = reader.runs()
    finally:
        reader.close()
    if not runs:
        # The demo's --db is a SQLite file: point it at a PostgreSQL database's server instead.
        demo = ("metrana demo --url <the server's URL>" if reader.source.startswith("--db")
                and "://" in reader.source else f"metrana demo {reader.source}")
        print(f"no runs yet in {reader.where}: log one with metrana.init(..., "
              f"ingestion_url=<the server's URL>), or run '{demo}'")
        return 0
    runs = list(reversed(runs))  # oldest first: the run just made is printed last
    now = time.time_ns()
    rows = [("WORKSPACE/PROJECT/RUN", "EXPERIMENT", "STATUS", "TAGS", "CREATED",
             "LAST ACTIVITY", "SERIES", "POINTS")] + [
        (_label(r), r["experiment"] or "-", r.get("status", "-"),
         ",".join(r.get("tags") or []) or "-", _when(r.get("created_ns")),
         _ago(r.get("last_activity_ns"), now), f"{r['series_count']:,}", f"{r['point_count']:,}")
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) if i < 6 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    labels = [_label(r) for r in runs]
    twice = sorted({label for label in labels if labels.count(label) > 1})
    if twice:
        print(f"\n{', '.join(twice)}: more than one run prints like this (a '/' inside a name); "
              "export one with --workspace W --project P --run R")
    print(f"\nexport one: metrana export {_shell(labels[-1])} {reader.source} -o points.csv")
    return 0


def _delete(args: argparse.Namespace) -> int:
    """``metrana runs delete RUN...``: each run named, counted and confirmed, then deleted."""
    reader = _Reader(args.db, args.url, args.api_key)
    try:
        found = [_find_run(reader, text, (None, None, None)) for text in args.runs]
        unique = list({_label(d): d for d in found}.values())
        lines = [f"  {_label(d)}: {len(d['series']):,} series, "
                 f"{sum(s['point_count'] for s in d['series']):,} points" for d in unique]
        if not args.yes:
            if not sys.stdin.isatty():
                raise _CLIError("deleting runs asks for confirmation on a terminal; pass --yes "
                                "to delete without asking", status=2)
            print(f"delete {len(unique)} run(s) from {reader.where}, for good?", file=sys.stderr)
            print("\n".join(lines), file=sys.stderr)
            reply = input("type 'yes' to delete: ").strip().lower()
            if reply not in ("y", "yes"):
                print("nothing deleted", file=sys.stderr)
                return 1
        total = 0
        for index, detail in enumerate(unique):
            last = index == len(unique) - 1
            removed = reader.manage("delete_run", {
                "workspace": detail["workspace"], "project": detail["project"],
                "run": detail["run"], "compact": bool(args.compact and last)})
            total += int(removed["points_removed"])
            print(f"deleted {_label(detail)}: {removed['points_removed']:,} points in "
                  f"{removed['series_removed']:,} series removed")
            if last and args.compact:
                print("compacted the database file (VACUUM)" if removed["compacted"] else
                      "nothing to compact: PostgreSQL reuses the space by itself")
        if len(unique) > 1:
            print(f"{total:,} points removed in all")
    finally:
        reader.close()
    return 0


def _rename(args: argparse.Namespace) -> int:
    """``metrana runs rename RUN NEW_NAME``."""
    if not args.new_name or args.new_name.strip() != args.new_name:
        raise _CLIError(f"NEW_NAME {args.new_name!r} is empty or has surrounding whitespace",
                        status=2)
    reader = _Reader(args.db, args.url, args.api_key)
    try:
        detail = _find_run(reader, args.run, (None, None, None))
        reader.manage("rename_run", {"workspace": detail["workspace"],
                                     "project": detail["project"], "run": detail["run"],
                                     "new_name": args.new_name})
    finally:
        reader.close()
    print(f"renamed {_label(detail)} to "
          f"{_label({**detail, 'run': args.new_name})}")
    return 0


def _when(ns: int | None) -> str:
    """A local date and time to the second."""
    if not ns:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ns / 1e9))


def _ago(ns: int | None, now: int) -> str:
    """How long ago, in the largest unit that reads naturally."""
    if not ns:
        return "-"
    seconds = max(0, (now - ns) // 10**9)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


_EXPORT_COLUMNS = ("kind", "metric_name", "scale", "labels", "environment_id", "episode",
                   "step", "minor_step", "timestamp_ns", "value")


def _export(args: argparse.Namespace) -> int:
    if args.format == "parquet":
        from ._export_parquet import export_command

        return export_command(args)
    parts = (args.workspace, args.project, args.run_name)
    if any(p is not None for p in parts):
        if not all(parts) or args.run is not None:
            raise _CLIError("name the run either as WORKSPACE/PROJECT/RUN or with all three of "
                            "--workspace, --project and --run", status=2)
    elif args.run is None:
        raise _CLIError("which run? Give WORKSPACE/PROJECT/RUN as 'metrana runs' prints it",
                        status=2)
    reader = _Reader(args.db, args.url, args.api_key)
    try:
        detail = _find_run(reader, args.run, parts)
        with _output(args.output) as out:
            _write_points(out, args.format, reader.points(detail))
    finally:
        reader.close()
    if args.output:
        print(f"metrana export: wrote {_label(detail)} to {args.output}", file=sys.stderr)
    return 0


def _find_run(reader: _Reader, text: str | None, parts: tuple[str | None, ...]) -> dict[str, Any]:
    """The run named on the command line, or a _CLIError that says what exists instead.

    ``text`` is matched against ``workspace/project/run`` as ``metrana runs`` prints it, so a
    name containing ``/`` works. ``a/b/c`` can only be split one way; longer names need the
    list of runs to find the split.
    """
    if text is None:
        workspace, project, run = (str(p) for p in parts)
        detail = reader.detail(workspace, project, run)
        if detail is None:
            raise _CLIError(f"no run with workspace {workspace!r}, project {project!r} and run "
                            f"{run!r} in {reader.where}. 'metrana runs {reader.source}' "
                            "lists every run.")
        return detail
    split = text.split("/")
    if len(split) == 3 and all(split):
        detail = reader.detail(*split)
        if detail is not None:
            return detail
    runs = reader.runs()
    matches = [r for r in runs if _label(r) == text]
    if len(matches) == 1:
        found = reader.detail(matches[0]["workspace"], matches[0]["project"], matches[0]["run"])
        if found is not None:
            return found
    if len(matches) > 1:
        options = "; ".join(f"--workspace {_shell(r['workspace'])} --project "
                            f"{_shell(r['project'])} --run {_shell(r['run'])}" for r in matches)
        raise _CLIError(f"{len(matches)} runs print as {text!r}; name one part by part: "
                        f"{options}", status=2)
    labels = [_label(r) for r in runs]
    close = difflib.get_close_matches(text, labels, n=3, cutoff=0.6)
    close += [label for r, label in zip(runs, labels, strict=True)
              if r["run"] == text and label not in close]
    hint = f" Did you mean {' or '.join(close)}?" if close else ""
    listing = f" 'metrana runs {reader.source}' lists every run." if runs else ""
    if len(split) < 3:
        raise _CLIError(f"expected WORKSPACE/PROJECT/RUN, got {text!r}.{hint}{listing}",
                        status=2)
    if not runs:
        raise _CLIError(f"no run {text!r}: {reader.where} has no runs yet")
    raise _CLIError(f"no run {text!r} in {reader.where}.{hint}{listing}")


def _shell(word: str) -> str:
    import shlex

    return shlex.quote(word)


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a file that appears only when the export succeeded (no partial files)."""
    if path is None:
        yield sys.stdout
        sys.stdout.flush()
        return
    path = path.expanduser()
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        out = open(partial, "w", newline="")
    except OSError as exc:
        raise _CLIError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with out:
            yield out
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _write_points(out: IO[str], fmt: str, points: Iterator[dict[str, Any]]) -> None:
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(_EXPORT_COLUMNS)
        for p in points:
            writer.writerow([json.dumps(p["labels"], sort_keys=True) if c == "labels"
                             else ("" if p[c] is None else _cell(p[c]))
                             for c in _EXPORT_COLUMNS])
        return
    for p in points:
        if isinstance(p["value"], float):
            p = {**p, "value": json_number(p["value"])}
        out.write(json.dumps(p, allow_nan=False) + "\n")


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)

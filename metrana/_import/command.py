"""``metrana import tensorboard|mlflow``: the command, from parsed arguments to exit status.

Where the runs go: ``--url`` (a running server), or ``--db`` (a database, written through a
server of the import's own: :mod:`.local_server`); by default the database ``metrana serve``
uses by default. Each run is read, then logged (:mod:`.loader`); progress and the summary are
:mod:`.report`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .._exceptions import MetranaError
from .source import SourceRun

__all__ = ["run_import"]

_NEEDS = {"tensorboard": ("tensorboard", "google_crc32c", "tqdm"), "mlflow": ("mlflow", "tqdm")}
DEFAULT_WORKSPACE = "imported"


def _error(message: str, status: int = 1) -> Exception:
    from .._cli_common import CLIError

    return CLIError(message, status)


def _check_extra(source: str) -> None:
    import importlib.util

    missing = [name for name in _NEEDS[source] if importlib.util.find_spec(name) is None]
    if missing:
        raise _error(f"importing from {source} needs {', '.join(missing)}: "
                     "pip install 'metrana[import]'")


@contextmanager
def _destination(args: argparse.Namespace) -> Iterator[tuple[str, str, str | None]]:
    """The server to log to, how to name it in the summary, and the key it takes (the
    import's own server: its own key; a server of ``--url``: the user's, if any)."""
    from .._cli_common import check_database as _check_database, default_db as _default_db, is_url as _is_url

    if args.url:
        yield args.url.rstrip("/"), args.url, args.api_key or os.environ.get(
            "METRANA_API_KEY") or None
        return
    db = args.db or _default_db()
    if not _is_url(db):
        path = Path(db).expanduser()
        _check_database(path)
        db = str(path)
    from .local_server import local_server

    try:
        server = local_server(db)
        url, key = server.__enter__()
    except RuntimeError as exc:
        raise _error(str(exc)) from None
    try:
        from ..server.store.database import redact

        yield url, f"database {redact(db) if _is_url(db) else db}", key
    finally:
        server.__exit__(None, None, None)


def run_import(args: argparse.Namespace) -> int:
    """Import every run of the source the arguments name; the exit status."""
    from . import report
    from .loader import Loader, RunReport, Target

    _check_extra(args.source)
    if args.source == "tensorboard":
        from .tensorboard import find_runs

        logdir = Path(args.logdir).expanduser()
        if not logdir.is_dir():
            raise _error(f"{logdir} is not a directory: give the log directory TensorBoard "
                         "was started with (--logdir)", status=2)
        runs = find_runs(logdir)
        if not runs:
            raise _error(f"no TensorBoard event files (events.out.tfevents.*) under {logdir}")
        project = args.project or logdir.resolve().name
    else:
        runs = _mlflow_runs(args)
        project = args.project or "mlflow"
    workspace = args.workspace or DEFAULT_WORKSPACE
    reports: list[RunReport] = []
    started = time.perf_counter()
    with _destination(args) as (url, where, api_key):
        loader = Loader(Target(url, api_key, workspace, project))
        bars = report.Bars(len(runs))
        pending = None
        try:
            for source in runs:
                data = source.read()  # while the previous run's last points are delivered
                if pending is not None:
                    reports.append(pending.wait())
                    pending = None
                with bars.run(source.name, data.points) as progress:
                    pending = loader.start(source, data, progress)
            if pending is not None:
                reports.append(pending.wait())
        except KeyboardInterrupt:
            if pending is not None:
                reports.append(pending.wait())
            bars.close()
            report.summary(reports, f"{where}, {workspace}/{project}",
                           time.perf_counter() - started, sys.stdout)
            raise _error("interrupted; run the same command again to import the rest (what "
                         "was stored is not sent again)", status=130) from None
        except MetranaError as exc:
            bars.close()
            raise _error(str(exc)) from None
        bars.close()
    report.summary(reports, f"{where}, {workspace}/{project}", time.perf_counter() - started,
                   sys.stdout)
    incomplete = [r.name for r in reports if not r.complete]
    if incomplete:
        print(f"metrana import: {len(incomplete)} run(s) not completely delivered "
              f"({', '.join(incomplete[:5])}): what was not delivered waits in the spool; run "
              "the same command again once the server answers", file=sys.stderr)
        return 1
    return 0


def _mlflow_runs(args: argparse.Namespace) -> list[SourceRun]:
    from .mlflow import find_runs

    try:
        runs = find_runs(args.tracking_uri, args.experiment or ())
    except ValueError as exc:
        raise _error(str(exc), status=2) from None
    except Exception as exc:  # noqa: BLE001 - mlflow's errors are its own classes
        raise _error(f"cannot read the MLflow tracking store {args.tracking_uri}: {exc}") from None
    if not runs:
        raise _error(f"no MLflow runs in {args.tracking_uri}"
                     + (f" (experiments {', '.join(args.experiment)})" if args.experiment else ""))
    return runs

"""The ``metrana`` command: ``serve``, ``runs``, ``export``, ``sync`` and ``demo``."""

from __future__ import annotations

import argparse
import csv
import gc
import json
import math
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["main"]


def _default_db() -> Path:
    from .server.runner import DEFAULT_DB_PATH

    return Path(os.environ.get("METRANA_DB", DEFAULT_DB_PATH))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metrana", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the local ingestion server (SQLite)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    serve.add_argument("--port", type=int, default=8787, help="port (0 picks a free one)")
    serve.add_argument("--db", type=Path, default=None, help="SQLite file (default ~/.metrana/)")
    serve.add_argument(
        "--api-key",
        default=os.environ.get("METRANA_SERVER_API_KEY"),
        help="require 'Authorization: Bearer KEY' (or set METRANA_SERVER_API_KEY)",
    )

    for name, help_text in (("runs", "list runs with point counts"),
                            ("export", "write every point of a run")):
        cmd = sub.add_parser(name, help=help_text)
        source = cmd.add_mutually_exclusive_group()
        source.add_argument("--db", type=Path, default=None, help="read this SQLite file")
        source.add_argument("--url", default=None, help="read from a running server")
        cmd.add_argument("--api-key", default=os.environ.get("METRANA_API_KEY"), help=argparse.SUPPRESS)
        if name == "export":
            cmd.add_argument("run", metavar="WORKSPACE/PROJECT/RUN")
            cmd.add_argument("--format", choices=("csv", "jsonl"), default="csv")
            cmd.add_argument("-o", "--output", type=Path, default=None, help="file (default stdout)")

    sync = sub.add_parser("sync", help="deliver spooled points (offline runs, outages)")
    sync.add_argument("path", nargs="?", default=None,
                      help="a run's spool directory or one above (default: the spool root)")
    sync.add_argument("--url", default=None, help="service URL (default METRANA_INGESTION_URL)")
    sync.add_argument("--api-key", default=None, help=argparse.SUPPRESS)

    demo = sub.add_parser("demo", help="log an ML and an RL run and print what was stored")
    demo.add_argument("--url", default=None, help="server to use (default: start a local one)")

    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "runs":
            return _runs(args)
        if args.command == "export":
            return _export(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(args.url)
    except _CLIError as exc:
        print(f"metrana {args.command}: {exc}", file=sys.stderr)
        return 2
    return 2


class _CLIError(Exception):
    pass


def _sync(args: argparse.Namespace) -> int:
    from ._exceptions import MetranaError
    from ._sync import sync

    try:
        report = sync(args.path, ingestion_url=args.url, api_key=args.api_key)
    except MetranaError as exc:
        raise _CLIError(str(exc)) from None
    print(f"synced {report.runs} run(s): {report.delivered:,} points delivered, "
          f"{report.rejected:,} rejected, {report.damaged_records} damaged record(s) skipped, "
          f"{report.segments_in_use} segment(s) in use by a running logger")
    for error in report.errors:
        print(f"  {error}", file=sys.stderr)
    return 0 if not report.errors else 1


def _serve(args: argparse.Namespace) -> int:
    import trio

    from .server.runner import serve, warn_if_public

    db = args.db or _default_db()
    warn_if_public(args.host, args.api_key)
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
                    api_key=args.api_key,
                    handle_signals=True,
                    task_status=task_status,
                )
            )
            print(f"metrana serve: listening on {info.url}", flush=True)
            print(f"metrana serve: database {info.db_path}", flush=True)
            print(f"metrana serve: clients use ingestion_url={info.url}", flush=True)

    try:
        trio.run(main)
    except OSError as exc:
        raise _CLIError(f"cannot listen on {args.host}:{args.port}: {exc}") from None
    print("metrana serve: stopped; all acknowledged data is committed", flush=True)
    return 0


class _Reader:
    """Reads runs either straight from the SQLite file or over the server's read API."""

    def __init__(self, db: Path | None, url: str | None, api_key: str | None) -> None:
        self._url = url.rstrip("/") if url else None
        self._api_key = api_key
        self._store: Any = None
        if self._url is None:
            from .server.store import Store

            path = db or _default_db()
            if not path.exists():
                raise _CLIError(f"no database at {path} (start 'metrana serve' or pass --db)")
            self._store = Store(path)

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        try:
            response = httpx.get(f"{self._url}{path}", params=params, headers=headers, timeout=60)
        except httpx.HTTPError as exc:
            raise _CLIError(f"cannot reach {self._url}: {exc}") from None
        if response.status_code != 200:
            raise _CLIError(f"{self._url}{path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def runs(self) -> list[dict[str, Any]]:
        if self._store is not None:
            return list(self._store.list_runs())
        return list(self._get("/api/runs")["runs"])

    def points(self, workspace: str, project: str, run: str) -> Iterator[dict[str, Any]]:
        if self._store is not None:
            from .server.store import NotFound

            try:
                yield from self._store.iter_export(workspace, project, run)
            except NotFound as exc:
                raise _CLIError(str(exc)) from None
            return
        base = "/api/runs/" + "/".join(quote(p, safe="") for p in (workspace, project, run))
        detail = self._get(base)
        for series in detail["series"]:
            identity = {k: series[k] for k in
                        ("kind", "metric_name", "scale", "labels", "environment_id", "episode")}
            for point in self._get(f"{base}/series/{series['id']}/points")["points"]:
                value = point["value"]
                if isinstance(value, str):
                    point["value"] = float(value.replace("Infinity", "inf"))
                yield {**identity, **point}


def _runs(args: argparse.Namespace) -> int:
    reader = _Reader(args.db, args.url, args.api_key)
    try:
        runs = reader.runs()
    finally:
        reader.close()
    if not runs:
        print("no runs")
        return 0
    rows = [("WORKSPACE/PROJECT/RUN", "EXPERIMENT", "SERIES", "POINTS")] + [
        (f"{r['workspace']}/{r['project']}/{r['run']}", r["experiment"] or "-",
         str(r["series_count"]), str(r["point_count"]))
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip())
    return 0


_EXPORT_COLUMNS = ("kind", "metric_name", "scale", "labels", "environment_id", "episode",
                   "step", "minor_step", "timestamp_ns", "value")


def _export(args: argparse.Namespace) -> int:
    parts = args.run.split("/")
    if len(parts) != 3 or not all(parts):
        raise _CLIError(f"expected WORKSPACE/PROJECT/RUN, got {args.run!r}")
    reader = _Reader(args.db, args.url, args.api_key)
    points = reader.points(*parts)
    out = open(args.output, "w", newline="") if args.output else sys.stdout
    try:
        if args.format == "csv":
            writer = csv.writer(out)
            writer.writerow(_EXPORT_COLUMNS)
            for p in points:
                writer.writerow([json.dumps(p["labels"], sort_keys=True) if c == "labels"
                                 else ("" if p[c] is None else _cell(p[c]))
                                 for c in _EXPORT_COLUMNS])
        else:
            for p in points:
                value = p["value"]
                if isinstance(value, float) and not math.isfinite(value):
                    p = {**p, "value": "NaN" if value != value else
                         ("Infinity" if value > 0 else "-Infinity")}
                out.write(json.dumps(p, allow_nan=False) + "\n")
    finally:
        reader.close()
        if out is not sys.stdout:
            out.close()
    return 0


def _cell(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)

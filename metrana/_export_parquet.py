"""``metrana export … --format parquet``: runs as typed Parquet files, read through
:mod:`metrana.query` (a server with ``--url``, or the database itself with ``--db``).

A run's points are :meth:`metrana.query.QueryClient.fetch_run_points`'s long format, written
with one fixed schema: ``int64`` steps, ``float64`` values, ``timestamp[ns, UTC]`` times, a
string column per label key. A whole project is one file per run (``-o DIR``) or one file with
every run (``-o FILE.parquet``, one row group per run: a project larger than memory is written
run by run). A file appears only once it is written whole.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

__all__ = ["export_parquet", "schema"]


def schema(label_keys: list[str]) -> Any:
    """The Parquet schema of an export whose series have these label keys."""
    import pyarrow as pa

    fields = [
        pa.field("run", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("metric", pa.string(), nullable=False),
        pa.field("scale", pa.string(), nullable=False),
        pa.field("environment", pa.string()),
        pa.field("episode", pa.int64()),
        pa.field("step", pa.int64(), nullable=False),
        pa.field("minor_step", pa.int64()),
        pa.field("value", pa.float64()),
        pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
    ]
    fields += [pa.field(f"labels/{key}", pa.string()) for key in label_keys]
    return pa.schema(fields)


def _table(frame: Any, label_keys: list[str]) -> Any:
    import pyarrow as pa

    for key in label_keys:
        if f"labels/{key}" not in frame.columns:
            frame[f"labels/{key}"] = None
    columns = [f.name for f in schema(label_keys)]
    return pa.Table.from_pandas(frame[columns], schema=schema(label_keys), preserve_index=False)


@contextlib.contextmanager
def _partial(path: Path) -> Iterator[Path]:
    """A temporary name beside ``path``, renamed to it when the block succeeds."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        yield partial
        os.replace(partial, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()


def _labels(client: Any, runs: list[str] | None) -> list[str]:
    listing = client.list_series(runs)
    return sorted({key for labels in listing["labels"] for key in labels})


def _write(client: Any, runs: list[str], path: Path) -> int:
    """Every point of ``runs`` into one file, a row group per run; the number of points."""
    import pyarrow.parquet as pq

    keys = _labels(client, runs)
    written = 0
    with _partial(path) as partial:
        with pq.ParquetWriter(partial, schema(keys)) as writer:
            for run in runs:
                table = _table(client.fetch_run_points(run), keys)
                writer.write_table(table)
                written += table.num_rows
    return written


def file_name(run: str) -> str:
    """A run's file in an export directory: its name with ``/`` (and what else a file name
    cannot hold) percent-encoded, so every run gets its own file; never hidden."""
    name = quote(run, safe=" +,-=@_.~()[]")
    if name.startswith("."):
        name = "%2E" + name[1:]
    return name + ".parquet"


def export_parquet(client: Any, run: str | None, output: Path) -> list[tuple[Path, int]]:
    """Export one run to the file ``output``, or every run of the client's project to
    ``output`` (a ``.parquet`` file: all runs in it; else a directory: a file per run).

    Returns:
        (file, points) for each file written.
    """
    if run is not None:
        return [(output, _write(client, [run], output))]
    runs = list(client.fetch_runs(order_by=None)["name"])[::-1]  # oldest first
    if output.suffix == ".parquet":
        return [(output, _write(client, runs, output))]
    output.mkdir(parents=True, exist_ok=True)
    return [(output / file_name(name), _write(client, [name], output / file_name(name)))
            for name in runs]


def export_command(args: Any) -> int:
    """``metrana export … --format parquet`` from parsed arguments; the exit status."""
    import sys

    from ._cli_common import CLIError as _CLIError, default_db as _default_db

    try:
        import pyarrow  # noqa: F401

        from .query import MetranaQueryError, QueryClient
    except ImportError:
        raise _CLIError("--format parquet needs pandas and pyarrow: pip install "
                        "'metrana[query]'") from None
    if args.output is None:
        raise _CLIError("Parquet is a binary format: give -o FILE (one run), or -o DIR or "
                        "-o FILE.parquet (a whole project)", status=2)
    if args.workspace is not None or args.project is not None or args.run_name is not None:
        if args.run is not None or args.workspace is None or args.project is None:
            raise _CLIError("name the runs either as WORKSPACE/PROJECT[/RUN] or with --workspace "
                            "and --project (and --run for one run)", status=2)
        workspace, project, run = args.workspace, args.project, args.run_name
    elif args.run is None or args.run.count("/") < 1 or not all(args.run.split("/")[:2]):
        raise _CLIError("which runs? Give WORKSPACE/PROJECT (every run) or WORKSPACE/PROJECT/RUN",
                        status=2)
    else:
        workspace, project, *rest = args.run.split("/", 2)
        run = rest[0] if rest else None
    output = args.output.expanduser()
    if run is not None and output.is_dir():
        raise _CLIError(f"{output} is a directory: -o names the file for run {run!r}", status=2)
    try:
        if args.url is not None:
            client = QueryClient(workspace, project, url=args.url, api_key=args.api_key)
        else:
            client = QueryClient(workspace, project, db=args.db or _default_db())
        with client:
            if run is not None:
                client.list_series(run)  # an unknown run or project: its error, nothing written
            written = export_parquet(client, run, output)
    except MetranaQueryError as exc:
        raise _CLIError(str(exc)) from None
    for path, points in written:
        print(f"metrana export: wrote {points:,} points to {path}", file=sys.stderr)
    if not written:
        print(f"metrana export: project {workspace}/{project} has no runs", file=sys.stderr)
    return 0

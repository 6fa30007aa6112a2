"""The dashboard's side of ``metrana serve``: its static files and the reads only it needs.

The page (``static/index.html`` with its script and stylesheet, and uPlot, vendored) is served
at ``/`` and ``/static/...`` without the API key: it holds nothing but code. Everything it
shows comes from the read API, which requires the key when the server has one (the page asks
for it once and keeps it in the tab's ``sessionStorage``).

Reads (SQL with ``?`` placeholders through ``store.db.read()``, so SQLite and PostgreSQL alike):

- :func:`changed_series`: the series of a run written since a time — the live page's cursor, so
  a poll costs what changed, not every series of the run.
- :func:`many_buckets`: the buckets of several series of a run in one request, each over its
  own range — a page of many charts, and each live poll, is one request, not one per chart.
- :func:`rl_series_ids`: the RL series of one metric, optionally of one environment (the band of
  a single environment).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path
from typing import Any

import attrs

from .errors import NotFound
from .store import SERIES_COLUMNS, Store, run_status, series_dict

try:
    import orjson

    def _encode(payload: Any) -> bytes:
        return orjson.dumps(payload)

except ImportError:  # pragma: no cover - orjson is part of the server extra

    def _encode(payload: Any) -> bytes:
        return json.dumps(payload, allow_nan=False).encode()

__all__ = ["MAX_BATCH", "STATIC_DIR", "StaticFiles", "changed_series", "many_buckets",
           "parse_series_specs", "rl_series_ids"]

STATIC_DIR = Path(__file__).parent / "static"
MAX_BATCH = 100  # series in one many_buckets request
_INT64 = 2**63

_CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    "": "text/plain; charset=utf-8",  # LICENSE
}
# The page runs only its own files: no inline script, nothing from another origin.
_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "frame-ancestors 'none'")


@attrs.frozen
class Asset:
    body: bytes
    content_type: str
    etag: bytes


class StaticFiles:
    """The files under ``static/``, read once, by URL path (``/`` is ``index.html``).

    Only files that exist when the server starts are served: a path is looked up in a dict,
    never joined onto the directory, so nothing outside it can be named.
    """

    def __init__(self, root: Path = STATIC_DIR) -> None:
        self._assets: dict[str, Asset] = {}
        if not root.is_dir():
            return
        for file in sorted(root.rglob("*")):
            if not file.is_file() or file.suffix not in _CONTENT_TYPES:
                continue
            body = file.read_bytes()
            url = "/static/" + file.relative_to(root).as_posix()
            etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
            self._assets[url] = Asset(body, _CONTENT_TYPES[file.suffix], etag)
        if "/static/index.html" in self._assets:
            self._assets["/"] = self._assets["/static/index.html"]

    def __contains__(self, path: str) -> bool:
        return path in self._assets

    def response(self, method: str, path: str, headers: dict[bytes, bytes]
                 ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body for a GET or HEAD of a path ``in`` this object."""
        if method not in ("GET", "HEAD"):
            body = b"static files accept GET and HEAD only\n"
            return 405, [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD"),
                         (b"content-length", str(len(body)).encode())], body
        asset = self._assets[path]
        common = [(b"etag", asset.etag), (b"cache-control", b"no-cache"),
                  (b"x-content-type-options", b"nosniff")]
        if asset.content_type.startswith("text/html"):
            common += [(b"content-security-policy", _CSP.encode()), (b"referrer-policy", b"no-referrer")]
        if headers.get(b"if-none-match", b"") == asset.etag:
            return 304, common, b""
        out = [(b"content-type", asset.content_type.encode()),
               (b"content-length", str(len(asset.body)).encode()), *common]
        return 200, out, (b"" if method == "HEAD" else asset.body)


def changed_series(store: Store, workspace: str, project: str, run_name: str, since_ns: int
                   ) -> dict[str, Any]:
    """The run's status and the series written after ``since_ns`` (server time, ns).

    ``now_ns`` is the cursor for the next call. A writer stamps its series with the time its
    request started, so a request that started before ``now_ns`` may commit after this read:
    callers ask again from a few seconds before the cursor (a series seen twice is harmless).
    """
    now = time.time_ns()
    with store.db.read() as tx:
        run = tx.one(
            "SELECT runs.id, runs.created_ns, runs.closed_ns FROM runs "
            "JOIN projects ON projects.id = runs.project_id "
            "WHERE workspace = ? AND project = ? AND run_name = ?",
            (workspace, project, run_name))
        if run is None:
            raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
        run_id, created_ns, closed_ns = run
        activity = tx.one("SELECT MAX(last_activity_ns) FROM series WHERE run_id = ?", (run_id,))
        series = [series_dict(row) for row in tx.all(
            f"SELECT {SERIES_COLUMNS} FROM series WHERE run_id = ? AND last_activity_ns > ? "
            "ORDER BY id", (run_id, since_ns))]
    last_activity = max(int(created_ns), int(activity[0] or 0) if activity else 0)
    return {"now_ns": now, "status": run_status(closed_ns, last_activity, now),
            "last_activity_ns": last_activity, "series": series}


def rl_series_ids(store: Store, workspace: str, project: str, run_name: str, metric: str,
                  scale: str | None, evaluation: bool | None, environment: str) -> list[int]:
    """The RL series of ``metric`` logged by one environment (all its episodes)."""
    run = store.get_run(workspace, project, run_name)
    return [int(s["id"]) for s in run["series"]
            if s["kind"] == "rl" and s["metric_name"] == metric
            and s["environment_id"] == environment
            and (scale is None or s["scale"] == scale)
            and (evaluation is None or (s["labels"].get("evaluation") == "true") == evaluation)]


SeriesSpec = tuple[int, int | None, int | None]


def parse_series_specs(text: str) -> list[SeriesSpec]:
    """``ID[:START[:END]],...`` (START or END may be empty) as (id, start, end); ValueError
    saying what is wrong."""
    specs: list[SeriesSpec] = []
    for item in text.split(","):
        fields = item.split(":")
        if not 1 <= len(fields) <= 3 or not fields[0]:
            raise ValueError(f"series must be ID[:START[:END]], comma-separated; got {item!r:.40}")
        numbers: list[int | None] = []
        for field in fields + [""] * (3 - len(fields)):
            try:
                number = int(field) if field else None
            except ValueError:
                raise ValueError(f"series {item!r:.40}: {field!r:.20} is not an integer") from None
            if number is not None and not -_INT64 <= number < _INT64:
                raise ValueError(f"series {item!r:.40}: {number} does not fit in 64 bits")
            numbers.append(number)
        series_id, start, end = numbers
        assert series_id is not None
        specs.append((series_id, start, end))
    if len(specs) > MAX_BATCH:
        raise ValueError(f"at most {MAX_BATCH} series per request, got {len(specs)}")
    return specs


def _spelt(column: list[Any]) -> list[Any]:
    """NaN and ±inf as the API spells them ("NaN", "Infinity", "-Infinity")."""
    if not any(v != v or v == math.inf or v == -math.inf for v in column if type(v) is float):
        return column
    return [("NaN" if v != v else "Infinity" if v > 0 else "-Infinity")
            if type(v) is float and not math.isfinite(v) else v for v in column]


def many_buckets(store: Store, workspace: str, project: str, run_name: str,
                 specs: list[SeriesSpec], n: int) -> bytes:
    """Buckets (as ``series/{id}/buckets`` returns them) of several series of one run, each over
    its own [start, end]; the response's JSON, encoded here (orjson: a 600-bucket series costs
    about 0.2 ms to encode instead of 5)."""
    ids = sorted({spec[0] for spec in specs})
    with store.db.read() as tx:
        run = tx.one("SELECT runs.id FROM runs JOIN projects ON projects.id = runs.project_id "
                     "WHERE workspace = ? AND project = ? AND run_name = ?",
                     (workspace, project, run_name))
        if run is None:
            raise NotFound(f"run {workspace}/{project}/{run_name} does not exist")
        marks = ", ".join("?" for _ in ids)
        known = {int(row[0]) for row in tx.all(
            f"SELECT id FROM series WHERE run_id = ? AND id IN ({marks})", (run[0], *ids))}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise NotFound(f"run {workspace}/{project}/{run_name} has no series "
                       f"{', '.join(map(str, unknown[:10]))}")
    out = []
    for series_id, start, end in specs:
        buckets = store.buckets([series_id], n, start, end)
        for key, value in buckets.items():
            if isinstance(value, list):
                buckets[key] = _spelt(value)
        out.append({"series_id": series_id, "start": start, "end": end, **buckets})
    return _encode({"series": out})

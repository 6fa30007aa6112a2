"""The read API: one route table, ``POST /api/query/<route>`` with a JSON body.

The dashboard, ``metrana runs``/``export`` and ``metrana.query`` all read through it. A route
checks its body and makes one call into the :class:`~metrana.server.store.Store`, which owns
every query; it never opens a transaction or writes SQL. One function, :func:`answer`,
serves both ways in: the app calls it for HTTP requests, and ``metrana.query``'s
``LocalTransport`` (``QueryClient(db=...)``, ``metrana runs --db``) calls it on a store it
opened itself, so reading a database file gives the same answers, and the same errors, as
asking a server.

Routes (every run-level route takes ``workspace``, ``project``, ``run``):

- ``all_runs``: every run of every project (of ``workspaces``, when given), newest first, with
  series and point counts;
- ``run``: one run with its attributes and series (ids, identity, extent, last point);
- ``changed_series``: the run's status and its series written after ``since_ns`` (the
  dashboard's live cursor);
- ``series_points``: one series' points (by ``series_id``) as objects, ``start``/``end``
  bounding the step, at most ``limit``;
- ``buckets``: one series' chart buckets, by ``series_id`` or by name (``series``: metric,
  scale, labels);
- ``many_buckets``: several series' buckets in one answer, each over its own range;
- ``many_runs`` (``runs``: a list of ``{workspace, project, run}``): several runs as ``run``
  answers each, and ``many_runs_buckets`` (each of ``runs`` with its ``series`` as in
  ``many_buckets``): their buckets, in one answer: the compare page reads 20 runs in two
  requests, not forty;
- ``band``: an RL metric reduced across environments (or within one ``environment``);
- ``series``: every series of some ``runs`` of a project (null: of all its runs), with its
  identity, point count and first and last step, from the per-series aggregates (no point is
  read): what an export lists before reading points, and where a resumed import continues;
- ``runs``: one page of a project's runs, filtered (a condition tree, or text:
  :mod:`.filter_text`) and ordered in SQL (:mod:`.store.filters`), with the asked attributes
  and series summaries (standard or RL); keyset pagination (``next`` is the cursor) or
  ``offset``; ``total`` adds how many match; ``"format": "columns"`` answers up to 20,000 runs
  as columns;
- ``project``: a project's run count, attribute paths (kinds, distinct values), metrics and
  band kinds: what its page needs first;
- ``aggregate_runs``: the matching runs grouped by attribute values, each group reduced on
  aligned step buckets (mean of each run's points per bucket; across runs avg, std, min, max,
  count) with a band (:mod:`.store.groups`); ``aggregations`` names those sent (count always);
- ``value_series``: a run's histogram and scatter series, with their last point's summary;
  ``value_chart``: one (``series_id``) as a distribution-over-steps chart of at most ``n``
  columns, or a scatter series' steps; ``value_at``: its histogram or cloud at ``step``;
  ``histograms``: every histogram of the run's series ``metric``; ``scatter``: its clouds
  (all, or the one at ``step``);
- ``compare_groups``: the matching runs' scores (a summary of a metric per run, optionally
  normalised per task), grouped, with IQM, median, mean and optimality gap and their
  stratified bootstrap 95% intervals, and if asked performance profiles and probabilities of
  improvement (:mod:`.statistics`; needs the ``stats`` extra);
- ``points``: raw points of (run, series) pairs, standard or RL, as columns: JSON arrays, or
  with ``"encoding": "binary"`` a :class:`~.store.views.Binary` answer (its arrays are views
  of the body for the client); paginated by point count.

``GET /api/runs…`` (the read API the README has documented since the first server) is kept as
thin aliases of these routes: :func:`alias` turns the path and its query string into a route
and a body, and nothing else differs.

Bad requests raise :class:`.errors.QueryError` (HTTP 400), unknown projects, runs and series
ids :class:`.errors.NotFound` (404).

Who may ask (:mod:`.access`): every route needs role ``read`` in the ``workspace`` its body
names (:data:`~.access.READ_RUNS`), checked by :func:`answer` before the route runs, so a route
added to :data:`ROUTES` is covered as it is; a route without a workspace is declared in
:data:`NEEDS` (``all_runs``: a listing, answered with the caller's workspaces only).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, unquote

from . import statistics
from .access import LIST_RUNS, OWNER, READ_RUNS, Need, Principal
from .api_keys import Role
from .errors import NotFound, QueryError
from .filter_text import parse_filter
from .ingest import INT64_MAX
from .store import Binary, SeriesSpec, Store
from .store.filters import FUNCTIONS, SeriesName, parse_series
from .store.groups import AGGREGATIONS
from .store.views import dumps, untagged

__all__ = ["MAX_BATCH", "MAX_BUCKETS", "MAX_PAGE_POINTS", "MAX_PAGE_RUNS", "NEEDS", "ROUTES",
           "Binary", "QueryError", "alias", "answer", "need_of", "parse_series_specs"]

MAX_PAGE_RUNS = 1000
MAX_COLUMN_RUNS = 20_000  # runs in one columnar answer (parallel coordinates)
MAX_GROUP_RUNS = 1000  # runs reduced into groups in one aggregate_runs answer
MAX_PAGE_POINTS = 1_000_000
MAX_COLUMNS = 1000
MAX_BUCKETS = 10_000
MAX_BATCH = 100  # series in one many_buckets request; runs in a many_runs(_buckets) one
MAX_BATCH_SERIES = 1000  # series in one many_runs_buckets request
MAX_POINT_SERIES = 10_000  # (run, series) pairs in one points request
INT64_MIN = -INT64_MAX - 1

Route = Callable[[Store, dict[str, Any]], Any]


def answer(store: Store, name: str, body: Any, principal: Principal = OWNER
           ) -> bytes | Binary:
    """The answer to ``POST /api/query/<name>`` for ``principal`` (default: the database
    opened in this process, which may read everything): JSON (encoded), or :class:`Binary`.

    Raises:
        Forbidden: the principal may not read the workspace the body names.
    """
    if not isinstance(body, dict):
        raise QueryError("the body is a JSON object")
    route = ROUTES.get(name)
    if route is None:
        raise NotFound(f"no query route {name!r}; one of {', '.join(ROUTES)}")
    need = need_of(name)
    principal.require(need, body)
    visible = principal.visible()
    if need.workspaces is None and visible is not None:  # a listing: the caller's part only
        asked = _optional(body, "workspaces", list, "a list of workspace names")
        body = {**body, "workspaces": sorted(visible & set(asked) if asked else visible)}
    result = route(store, body)
    return result if isinstance(result, (bytes, Binary)) else dumps(result)


# ----------------------------------------------------------------------- the body's fields


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise QueryError(f"{name!r} must be a non-empty string")
    return value


def _int(body: dict[str, Any], name: str, default: int | None = None, low: int = INT64_MIN,
         high: int = INT64_MAX) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise QueryError(f"{name!r} must be an integer from {low} to {high}, got {value!r:.40}")
    return value


def _required_int(body: dict[str, Any], name: str) -> int:
    value = _int(body, name)
    if value is None:
        raise QueryError(f"{name!r} is required: an integer")
    return value


def _run_names(body: dict[str, Any]) -> tuple[str, str, str]:
    return _text(body, "workspace"), _text(body, "project"), _text(body, "run")


def _range(body: dict[str, Any]) -> tuple[int, int | None, int | None]:
    """Buckets ``n`` (default 1000) over the steps [``start``, ``end``]."""
    n = _int(body, "n", 1000, 1, MAX_BUCKETS)
    assert n is not None
    return n, _int(body, "start"), _int(body, "end")


def _optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise QueryError(f"{name!r} is {what}")
    return value


# ------------------------------------------------------------------------- one run


def _all_runs(store: Store, body: dict[str, Any]) -> Any:
    workspaces = _optional(body, "workspaces", list, "a list of workspace names, or null")
    if workspaces is not None and not all(isinstance(w, str) for w in workspaces):
        raise QueryError("'workspaces' is a list of workspace names, or null")
    return {"runs": store.list_runs(None if workspaces is None else frozenset(workspaces))}


def _run(store: Store, body: dict[str, Any]) -> Any:
    return store.get_run(*_run_names(body))


def _changed_series(store: Store, body: dict[str, Any]) -> Any:
    since = _int(body, "since_ns", 0)
    assert since is not None
    return store.changed_series(*_run_names(body), since)


def _series_points(store: Store, body: dict[str, Any]) -> Any:
    return store.series_points(*_run_names(body), _required_int(body, "series_id"),
                               _int(body, "start"), _int(body, "end"), _int(body, "limit"))


def _buckets(store: Store, body: dict[str, Any]) -> Any:
    n, start, end = _range(body)
    series: int | SeriesName
    if body.get("series_id") is not None:
        series = _required_int(body, "series_id")
    else:
        series = parse_series(body.get("series"), "buckets")
    return store.series_buckets(*_run_names(body), series, n, start, end)


def _series_specs(body: dict[str, Any]) -> list[SeriesSpec]:
    """``series``: a list of ``{"id", "start", "end"}``, at most :data:`MAX_BATCH`."""
    items = body.get("series")
    if not isinstance(items, list) or not items:
        raise QueryError("'series' is a non-empty list of {\"id\": ID, \"start\": STEP, "
                         "\"end\": STEP} (start and end may be null)")
    if len(items) > MAX_BATCH:
        raise QueryError(f"at most {MAX_BATCH} series per request, got {len(items)}")
    specs: list[SeriesSpec] = []
    for item in items:
        if not isinstance(item, dict):
            raise QueryError(f"each of 'series' is {{\"id\": ID, \"start\": STEP, \"end\": "
                             f"STEP}}, got {item!r:.80}")
        specs.append((_required_int(item, "id"), _int(item, "start"), _int(item, "end")))
    return specs


def _many_buckets(store: Store, body: dict[str, Any]) -> Any:
    n, _, _ = _range(body)
    return store.many_buckets(*_run_names(body), _series_specs(body), n,
                              body.get("compact") is True)


def _runs_list(body: dict[str, Any], most: int) -> list[dict[str, Any]]:
    runs = body.get("runs")
    if not isinstance(runs, list) or not runs or len(runs) > most \
            or not all(isinstance(r, dict) for r in runs):
        raise QueryError(f"'runs' is a list of 1 to {most} {{\"workspace\": ..., "
                         "\"project\": ..., \"run\": ...}")
    return runs


def _many_runs(store: Store, body: dict[str, Any]) -> Any:
    return {"runs": store.get_runs([_run_names(r) for r in _runs_list(body, MAX_BATCH)])}


def _many_runs_buckets(store: Store, body: dict[str, Any]) -> Any:
    n, _, _ = _range(body)
    asked = [(_run_names(r), _series_specs(r)) for r in _runs_list(body, MAX_BATCH)]
    total = sum(len(specs) for _, specs in asked)
    if total > MAX_BATCH_SERIES:
        raise QueryError(f"at most {MAX_BATCH_SERIES} series per request, got {total}")
    return store.runs_buckets(asked, n, body.get("compact") is True)


def _band(store: Store, body: dict[str, Any]) -> Any:
    metric = _text(body, "metric")
    n, start, end = _range(body)
    return store.band(
        *_run_names(body), metric, n=n, start=start, end=end,
        scale=_optional(body, "scale", str, "a string such as 'EPISODE'"),
        evaluation=_optional(body, "evaluation", bool, "true, false or null"),
        environment=_optional(body, "environment", str, "an environment id (a string)"))


def _merged(store: Store, body: dict[str, Any]) -> Any:
    """A log_distributed series merged across writers, in ``n`` buckets of steps (a bucket
    per step when [start, end] spans at most ``n`` steps)."""
    metric = _text(body, "metric")
    labels = _optional(body, "labels", dict, "an object of label names to values, or null")
    if labels is not None and not all(isinstance(k, str) and isinstance(v, str)
                                      for k, v in labels.items()):
        raise QueryError("'labels' is an object of label names to values (strings)")
    n = _int(body, "n", 1000, 1, MAX_BUCKETS)
    assert n is not None
    return store.merged(*_run_names(body), metric, labels=labels or {},
                        scale=_optional(body, "scale", str, "a string such as 'ML_STEP'"),
                        n=n, start=_int(body, "start"), end=_int(body, "end"))


# ------------------------------------------------------------------- a project's runs


def _cursor(value: Any) -> tuple[Any, int] | None:
    """The ``next`` of a previous page, checked, with ±inf restored."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 2 or isinstance(value[1], bool) \
            or not isinstance(value[1], int):
        raise QueryError("'cursor' is the 'next' of the previous page, unchanged")
    key = untagged(value[0])
    if not isinstance(key, (str, int, float, type(None))):
        raise QueryError("'cursor' is the 'next' of the previous page, unchanged")
    return key, value[1]


def _filter(body: dict[str, Any]) -> Any:
    """``filter``: a condition tree, or text (:mod:`.filter_text`) as typed in the dashboard;
    in a tree, ``{"text": "..."}`` stands for the condition that text says (the dashboard's
    box and-ed with its parallel-coordinate brushes). Blank text is no condition."""
    value = body.get("filter")
    if isinstance(value, str):
        return parse_filter(value)
    if isinstance(value, dict) and list(value) == ["and"] and isinstance(value["and"], list):
        parts = [parse_filter(part["text"]) if isinstance(part, dict) and list(part) == ["text"]
                 and isinstance(part["text"], str) else part for part in value["and"]]
        kept = [part for part in parts if part is not None]
        return {"and": kept} if kept else None
    if isinstance(value, dict) and list(value) == ["text"] and isinstance(value["text"], str):
        return parse_filter(value["text"])
    return value


def _summary_columns(body: dict[str, Any]) -> list[tuple[SeriesName, str]]:
    summaries = body.get("summaries") or []
    if not isinstance(summaries, list) or len(summaries) > MAX_COLUMNS:
        raise QueryError(f"'summaries' is a list of at most {MAX_COLUMNS} "
                         "{\"series\": ..., \"fn\": ...}")
    columns: list[tuple[SeriesName, str]] = []
    for item in summaries:
        if not isinstance(item, dict) or item.get("fn") not in FUNCTIONS:
            raise QueryError(f"a summary column is {{\"series\": ..., \"fn\": one of "
                             f"{', '.join(FUNCTIONS)}}}, got {item!r:.80}")
        columns.append((parse_series(item.get("series"), "summary column"), item["fn"]))
    return columns


def _runs(store: Store, body: dict[str, Any]) -> Any:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    columnar = body.get("format", "rows") == "columns"
    if body.get("format", "rows") not in ("rows", "columns"):
        raise QueryError("'format' is \"rows\" (an object per run) or \"columns\"")
    most = MAX_COLUMN_RUNS if columnar else MAX_PAGE_RUNS
    limit = _int(body, "limit", most, 1, most)
    offset = _int(body, "offset", 0, 0)
    assert limit is not None and offset is not None
    if offset and body.get("cursor") is not None:
        raise QueryError("page by 'cursor' or by 'offset', not both")
    paths = body.get("attributes") or []
    if not isinstance(paths, list) or len(paths) > MAX_COLUMNS:
        raise QueryError(f"'attributes' is a list of at most {MAX_COLUMNS} paths")
    return store.query_runs(workspace, project, filter=_filter(body),
                            order_by=body.get("order_by"), attributes=paths,
                            summaries=_summary_columns(body), cursor=_cursor(body.get("cursor")),
                            limit=limit, offset=offset, total=body.get("total") is True,
                            columnar=columnar)


def _project(store: Store, body: dict[str, Any]) -> Any:
    return store.project_overview(_text(body, "workspace"), _text(body, "project"))


def _aggregate_runs(store: Store, body: dict[str, Any]) -> Any:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    n, start, end = _range(body)
    group_by = _group_paths(body)
    runs = _run_names_among(body)
    max_runs = _int(body, "max_runs", MAX_GROUP_RUNS, 1, MAX_GROUP_RUNS)
    assert max_runs is not None
    band = body.get("band") or "std"
    aggregations = body.get("aggregations")
    if aggregations is not None and (not isinstance(aggregations, list) or not all(
            a in AGGREGATIONS for a in aggregations)):
        raise QueryError(f"'aggregations' is a list, some of {', '.join(AGGREGATIONS)} (each "
                         "bucket's count is always sent), or null for all of them")
    return store.aggregate_runs(
        workspace, project, series=parse_series(body.get("series"), "aggregate_runs"),
        filter=_filter(body), runs=runs, group_by=group_by, n=n, start=start, end=end,
        band=band, order_by=body.get("order_by"), max_runs=max_runs,
        per_run=body.get("per_run") is True, aggregations=aggregations)


def _group_paths(body: dict[str, Any]) -> list[str]:
    group_by = body.get("group_by") or []
    if not isinstance(group_by, list) or len(group_by) > 10 or not all(
            isinstance(p, str) and p for p in group_by):
        raise QueryError("'group_by' is a list of at most 10 attribute paths (config/lr)")
    return group_by


def _run_names_among(body: dict[str, Any]) -> list[str] | None:
    runs = body.get("runs")
    if runs is not None and (not isinstance(runs, list) or len(runs) > MAX_GROUP_RUNS
                             or not all(isinstance(r, str) for r in runs)):
        raise QueryError(f"'runs' is a list of at most {MAX_GROUP_RUNS:,} run names, or null")
    return runs


def _compare_groups(store: Store, body: dict[str, Any]) -> Any:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    group_by = _group_paths(body)
    task_key = _optional(body, "task_key", str, "an attribute path (config/task), or null")
    reps = _int(body, "reps", 2000, 1, statistics.MAX_REPS)
    seed = _int(body, "seed", 0, 0, 2**32 - 1)
    max_runs = _int(body, "max_runs", MAX_GROUP_RUNS, 1, MAX_GROUP_RUNS)
    gamma = body.get("gamma", 1.0)
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma != gamma:
        raise QueryError("'gamma' (the optimality gap's threshold) is a number")
    aggregates = body.get("aggregates") or ["iqm", "median", "mean", "optimality_gap"]
    if not isinstance(aggregates, list):
        raise QueryError(f"'aggregates' is a list, some of {', '.join(statistics.AGGREGATES)}")
    assert reps is not None and max_runs is not None
    statistics.rliable_metrics()  # before any read: the message says how to install it
    scores = store.run_scores(
        workspace, project, series=parse_series(body.get("series"), "compare_groups"),
        summary=body.get("summary") or "last10", filter=_filter(body),
        runs=_run_names_among(body), group_by=group_by, task_key=task_key or None,
        max_runs=max_runs)
    return statistics.compare(
        scores, group_by=group_by, task_key=task_key or None, normalize=body.get("normalize"),
        aggregates=aggregates, reps=reps, seed=seed, gamma=float(gamma),
        profile=body.get("profile"), improvement=body.get("improvement"))


def _series(store: Store, body: dict[str, Any]) -> Any:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    names = body.get("runs")
    if names is not None and (not isinstance(names, list) or len(names) > MAX_PAGE_RUNS
                              or not all(isinstance(n, str) for n in names)):
        raise QueryError(f"'runs' is a list of at most {MAX_PAGE_RUNS} run names, or null for "
                         "every run of the project")
    return store.list_series(workspace, project, names)


def _points(store: Store, body: dict[str, Any]) -> Any:
    workspace, project = _text(body, "workspace"), _text(body, "project")
    limit = _int(body, "limit", MAX_PAGE_POINTS, 1, MAX_PAGE_POINTS)
    assert limit is not None
    rl = body.get("rl", False) is True
    encoding = body.get("encoding", "json")
    if encoding not in ("json", "binary"):
        raise QueryError("'encoding' is \"json\" (arrays of numbers) or \"binary\"")
    cursor = None
    if body.get("cursor") is not None:
        try:
            position, x, minor = (int(v) for v in body["cursor"])
        except (TypeError, ValueError):
            raise QueryError("'cursor' is the 'next' of the previous page, unchanged") from None
        cursor = (position, x, minor)
    items = body.get("series")
    if not isinstance(items, list) or not items or len(items) > MAX_POINT_SERIES:
        raise QueryError("'series' is a non-empty list of {\"run\": NAME, \"metric\": NAME}")
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("run"), str):
            raise QueryError(f"each of 'series' names a \"run\", got {item!r:.80}")
    named = [(item["run"], parse_series(item, "series")) for item in items]
    common = {"limit": limit, "cursor": cursor, "binary": encoding == "binary",
              "timestamps": body.get("timestamps", True) is not False}
    if rl:
        return store.query_points(workspace, project, **common, rl=[
            (run, name.metric, item.get("scale")) for (run, name), item in zip(named, items,
                                                                                strict=True)])
    return store.query_points(workspace, project, **common, standard=named)


# ------------------------------------------------------ histograms and point clouds


def _value_series(store: Store, body: dict[str, Any]) -> Any:
    return store.value_series(*_run_names(body))


def _value_chart(store: Store, body: dict[str, Any]) -> Any:
    columns = _int(body, "n", 300, 1, MAX_BUCKETS)
    assert columns is not None
    return store.value_chart(*_run_names(body), _required_int(body, "series_id"), columns)


def _value_at(store: Store, body: dict[str, Any]) -> Any:
    return store.value_at(*_run_names(body), _required_int(body, "series_id"),
                          _required_int(body, "step"))


def _histograms(store: Store, body: dict[str, Any]) -> Any:
    return store.histograms(*_run_names(body), _text(body, "metric"))


def _scatter(store: Store, body: dict[str, Any]) -> Any:
    return store.scatter(*_run_names(body), _text(body, "metric"), _int(body, "step"))


# What each route needs, when it is not READ_RUNS (role read in the body's workspace).
def _runs_workspaces(body: Any) -> list[str]:
    """Every workspace ``many_runs``' and ``many_runs_buckets``' body names (each run's, and a
    ``workspace`` beside them): the caller must cover each."""
    found = set()
    if isinstance(body, dict):
        if isinstance(body.get("workspace"), str) and body["workspace"]:
            found.add(body["workspace"])
        runs = body.get("runs")
        for run in runs if isinstance(runs, list) else ():
            if not isinstance(run, dict) or not isinstance(run.get("workspace"), str) \
                    or not run["workspace"]:
                raise QueryError("each of 'runs' is {\"workspace\": ..., \"project\": ..., "
                                 "\"run\": ...}, each a non-empty string")
            found.add(run["workspace"])
    if not found:
        raise QueryError("'runs' is a list of {\"workspace\": ..., \"project\": ..., "
                         "\"run\": ...}")
    return sorted(found)


READ_MANY_RUNS = Need(Role.READ, _runs_workspaces, "read")
NEEDS: dict[str, Need] = {"all_runs": LIST_RUNS, "many_runs": READ_MANY_RUNS,
                          "many_runs_buckets": READ_MANY_RUNS}


def need_of(name: str) -> Need:
    """What route ``name`` needs of its caller (:mod:`.access`)."""
    return NEEDS.get(name, READ_RUNS)


ROUTES: dict[str, Route] = {
    "all_runs": _all_runs,
    "run": _run,
    "changed_series": _changed_series,
    "series_points": _series_points,
    "buckets": _buckets,
    "many_buckets": _many_buckets,
    "many_runs": _many_runs,
    "many_runs_buckets": _many_runs_buckets,
    "band": _band,
    "merged": _merged,
    "series": _series,
    "runs": _runs,
    "project": _project,
    "aggregate_runs": _aggregate_runs,
    "compare_groups": _compare_groups,
    "points": _points,
    "value_series": _value_series,
    "value_chart": _value_chart,
    "value_at": _value_at,
    "histograms": _histograms,
    "scatter": _scatter,
}


# ----------------------------------------------------------------- GET /api/runs… aliases


def _param(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[-1] if values else None


def _param_int(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        number = int(text)
    except ValueError:
        raise QueryError(f"{what} must be an integer, got {text!r:.40}") from None
    if not INT64_MIN <= number <= INT64_MAX:
        raise QueryError(f"{what} must fit in 64 bits, got {text:.40}")
    return number


def parse_series_specs(text: str) -> list[dict[str, int | None]]:
    """``ID[:START[:END]],...`` (START or END may be empty) as ``many_buckets``' series;
    QueryError saying what is wrong."""
    specs: list[dict[str, int | None]] = []
    for item in text.split(","):
        fields = item.split(":")
        if not 1 <= len(fields) <= 3 or not fields[0]:
            raise QueryError(f"series must be ID[:START[:END]], comma-separated; got "
                             f"{item!r:.40}")
        numbers = [_param_int(field or None, f"series {item!r:.40}")
                   for field in fields + [""] * (3 - len(fields))]
        specs.append(dict(zip(("id", "start", "end"), numbers, strict=True)))
    return specs


def alias(path: str, query_string: bytes) -> tuple[str, dict[str, Any]]:
    """The route and body a ``GET /api/runs…`` path (as sent: each name percent-encoded
    whole) and its query string stand for; NotFound for a path that is none of them."""
    parts = [unquote(p) for p in path.split("/")[3:]]  # after "", "api", "runs"
    query = parse_qs(query_string.decode("utf-8", "replace"))
    if not parts:
        return "all_runs", {}
    if len(parts) == 2:  # a project's overview (the project page's first read: a GET)
        return "project", {"workspace": parts[0], "project": parts[1]}
    if len(parts) < 3:
        raise NotFound(f"no route GET {path}")
    body: dict[str, Any] = {"workspace": parts[0], "project": parts[1], "run": parts[2]}
    rest = parts[3:]
    numbers = {name: _param_int(_param(query, name), name)
               for name in ("n", "start", "end", "limit", "since") if name in query}
    if not rest:
        return "run", body
    if rest == ["series"]:  # the dashboard's live cursor: series written since a time
        return "changed_series", {**body, "since_ns": numbers.get("since") or 0}
    if rest == ["buckets"]:  # several series' buckets in one request
        series = _param(query, "series")
        if series is None:
            raise QueryError("query parameter 'series' is required")
        return "many_buckets", {**body, "series": parse_series_specs(series),
                                "n": numbers.get("n"), "compact": _param(query, "compact") == "1"}
    if rest == ["bands"]:
        evaluation = _param(query, "evaluation")
        return "band", {**body, "metric": _param(query, "metric"),
                        "scale": _param(query, "scale"),
                        "environment": _param(query, "environment"),
                        "evaluation": None if evaluation is None
                        else evaluation.lower() in ("1", "true", "yes"),
                        **{k: numbers.get(k) for k in ("n", "start", "end")}}
    if rest == ["merged"]:  # a log_distributed series merged across its writers
        labels = _param(query, "labels")
        try:
            parsed = json.loads(labels) if labels else None
        except ValueError:
            raise QueryError("query parameter 'labels' is a JSON object of label names to "
                             "values") from None
        return "merged", {**body, "metric": _param(query, "metric"),
                          "scale": _param(query, "scale"), "labels": parsed,
                          **{k: numbers.get(k) for k in ("n", "start", "end")}}
    if rest == ["values"]:  # histogram and scatter series
        return "value_series", body
    if len(rest) == 3 and rest[0] == "values" and rest[2] in ("chart", "at"):
        body["series_id"] = _param_int(rest[1], "series id")
        if rest[2] == "chart":
            return "value_chart", {**body, "n": numbers.get("n")}
        return "value_at", {**body, "step": _param_int(_param(query, "step"), "step")}
    if len(rest) == 3 and rest[0] == "series" and rest[2] in ("points", "buckets"):
        body["series_id"] = _param_int(rest[1], "series id")
        if rest[2] == "points":
            return "series_points", {**body, **{k: numbers.get(k)
                                                for k in ("start", "end", "limit")}}
        return "buckets", {**body, **{k: numbers.get(k) for k in ("n", "start", "end")}}
    raise NotFound(f"no route GET {path}")

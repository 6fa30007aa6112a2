"""``QueryClient``: a project's runs, series and summaries as pandas DataFrames."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from .._config import normalize_ingestion_url
from .._read_transport import HttpTransport, LocalTransport, Transport
from . import _frames
from ._conditions import AttrFilter, Condition, OrderBy, SeriesSummary, series_node
from ._exceptions import QueryRequestError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEFAULT_URL", "QueryClient"]

DEFAULT_URL = "http://127.0.0.1:8787"  # where `metrana serve` listens by default
_RUNS_PAGE = 1000
RUN_STATES = ("running", "finished", "crashed")  # metrana.server.store.liveness
_POINTS_PAGE = 1_000_000
_SERIES_PER_REQUEST = 10_000  # what one points request may name
_AGGREGATIONS = ("avg", "std", "stderr", "min", "max", "count", "lo", "hi", "mid")


def _check_filter(filter: Any) -> None:
    if filter is not None and not isinstance(filter, (Condition, str)):
        raise TypeError(f"filter must be a Condition (AttrFilter(...) < 1, combined with & and "
                        f"|) or its text ('config/lr < 0.01'), got {type(filter).__name__}")


def _group_name(group: Any, paths: list[str]) -> Any:
    """A group as ``compare_groups`` names it: its label, or its values by path."""
    if isinstance(group, Mapping):
        return dict(group)
    if len(paths) == 1 and not (isinstance(group, str) and group.startswith(f"{paths[0]}=")):
        return {paths[0]: group}
    return group


def _filter_body(filter: Condition | str | None) -> Any:
    return filter.tree if isinstance(filter, Condition) else filter


class QueryClient:
    """Reads one project of a ``metrana serve`` server (or of its database file) into pandas.

    Args:
        workspace_name: the workspace, as given to ``metrana.init``.
        project_name: the project, as given to ``metrana.init``.
        url: the server (default ``METRANA_INGESTION_URL``, else ``http://127.0.0.1:8787``);
            a trailing ``/v1`` is ignored, as in ``init``.
        api_key: the server's key if it has one (default ``METRANA_API_KEY``).
        db: instead of a server, a SQLite file written by ``metrana serve --db PATH`` (or a
            ``postgresql://`` URL), opened in this process; the same answers, no server.
        transport: an ``httpx.BaseTransport`` (tests).

    Raises:
        MetranaConfigError: ``url`` is not an http(s) URL.
        MetranaQueryError: ``db`` does not exist or cannot be opened.
    """

    def __init__(self, workspace_name: str, project_name: str, *, url: str | None = None,
                 api_key: str | None = None, db: str | Path | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        for name, value in (("workspace_name", workspace_name), ("project_name", project_name)):
            if not isinstance(value, str) or not value:
                raise TypeError(f"{name} must be a non-empty string, got {value!r}")
        self.workspace_name = workspace_name
        self.project_name = project_name
        self._transport: Transport
        if db is not None:
            if url is not None:
                raise TypeError("pass url= (a server) or db= (a database file), not both")
            local = LocalTransport(db)
            self._where = local.location
            self._transport = local
        else:
            resolved = normalize_ingestion_url(
                url or os.environ.get("METRANA_INGESTION_URL") or DEFAULT_URL, "url")
            key = api_key or os.environ.get("METRANA_API_KEY") or None
            self._where = resolved
            self._transport = HttpTransport(resolved, key, transport=transport)

    def __repr__(self) -> str:  # never the key
        return (f"QueryClient(workspace_name={self.workspace_name!r}, "
                f"project_name={self.project_name!r}, at={self._where!r})")

    def close(self) -> None:
        """Close the connection to the server (or the database file); ``with QueryClient(...)`` does it."""
        self._transport.close()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _body(self, **fields: Any) -> dict[str, Any]:
        return {"workspace": self.workspace_name, "project": self.project_name, **fields}

    # ------------------------------------------------------------------------ runs

    def _runs(self, filter: Condition | str | None, order_by: OrderBy | None,
              attributes: Sequence[str], summaries: Sequence[SeriesSummary],
              max_runs: int | None) -> list[dict[str, Any]]:
        _check_filter(filter)
        if order_by is not None and not isinstance(order_by, OrderBy):
            raise TypeError("order_by must be AttrOrderBy(...).asc()/.desc() or "
                            "SeriesOrderBy(...).asc()/.desc()")
        if isinstance(attributes, str):
            raise TypeError("attributes is a list of paths, e.g. ['config/lr']")
        if max_runs is not None and max_runs < 0:
            raise ValueError("max_runs must be >= 0")
        body = self._body(
            filter=_filter_body(filter),
            order_by=None if order_by is None else order_by.tree,
            attributes=list(attributes),
            summaries=[{"series": s.series, "fn": s.fn} for s in summaries])
        runs: list[dict[str, Any]] = []
        cursor = None
        while max_runs is None or len(runs) < max_runs:
            limit = _RUNS_PAGE if max_runs is None else min(_RUNS_PAGE, max_runs - len(runs))
            page = self._transport.call("runs", {**body, "limit": limit, "cursor": cursor})
            runs += page["runs"]
            cursor = page["next"]
            if cursor is None:
                break
        return runs

    def fetch_runs(self, *, filter: Condition | str | None = None, order_by: OrderBy | None = None,
                   attributes: Sequence[str] = (),
                   series_summaries: Sequence[SeriesSummary | tuple[str, str] | str] = (),
                   max_runs: int | None = None, experiment: str | None = None,
                   status: str | None = None) -> pd.DataFrame:
        """The project's runs, one row each, filtered and ordered by the server.

        Args:
            filter: e.g. ``(AttrFilter("config/lr") < 0.01) & (SeriesFilter("loss").last() <
                0.1)``, or the same as text, as typed in the dashboard's filter box:
                ``'config/lr < 0.01 and loss.last < 0.1'``. An RL metric works too:
                ``SeriesFilter("return", scale="EPISODE").last() > 100``, where ``last`` is the
                mean over environments of each one's mean of its last 10 episodes.
            order_by: e.g. ``SeriesOrderBy("acc", "max").desc()``; default: newest first.
            attributes: attribute columns, e.g. ``["config/lr", "config/optimizer"]``.
            series_summaries: summary columns: ``SeriesSummary("loss", "min")``, ``("loss",
                "min")`` or ``"loss:min"``; each is a float64 column named ``"loss:min"``.
            max_runs: at most this many runs (the first ones in the order).
            experiment: only the runs of this experiment (``AttrFilter("sys/experiment") ==
                experiment``, and-ed with ``filter``).
            status: only the runs in this state: ``"running"``, ``"finished"`` or
                ``"crashed"`` (``AttrFilter("sys/status") == status``, and-ed with ``filter``).

        Returns:
            A DataFrame: ``name``, ``experiment``, ``created``, ``last_activity`` (UTC
            timestamps), ``status`` (running, finished, crashed), then the attribute columns
            (``"sys/tags"``: a list of strings), then the summary columns.

        Raises:
            QueryRequestError: an unknown attribute or series, or a value of the wrong type
                (the message names it); an unknown project.
        """
        summaries = [SeriesSummary.of(s) for s in series_summaries]
        if status is not None and status not in RUN_STATES:
            raise ValueError(f"status is one of {', '.join(RUN_STATES)}, got {status!r}")
        for field, value in (("sys/experiment", experiment), ("sys/status", status)):
            if value is None:
                continue
            condition = AttrFilter(field) == value
            if isinstance(filter, str):
                filter = (f"({filter}) and {field} == {json.dumps(value)}" if filter.strip()
                          else condition)
            else:
                filter = condition if filter is None else filter & condition
        runs = self._runs(filter, order_by, attributes, summaries, max_runs)
        return _frames.runs_frame(runs, list(attributes), [s.column for s in summaries])

    def fetch_series_summaries(self, runs: Sequence[str] | str, metric: str, *,
                               functions: Sequence[str] = ("last",), scale: str | None = None,
                               labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Summaries of one metric for the named runs: index ``run``, a column per function
        (``last``, ``min``, ``max``, ``mean`` as float64; ``count`` as nullable Int64), from the
        aggregates the server keeps (no point is read). A run without the series has NaN
        (<NA> for its count)."""
        names = [runs] if isinstance(runs, str) else list(runs)
        summaries = [SeriesSummary(metric, fn, scale=scale, labels=labels) for fn in functions]
        found = self._runs(AttrFilter("sys/name").is_in(names), None, (), summaries, None)
        by_name = {run["name"]: run for run in found}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise QueryRequestError(f"project {self.workspace_name}/{self.project_name} has no "
                                    f"run {', '.join(map(repr, missing[:10]))}", status=404)
        frame = _frames.runs_frame([by_name[name] for name in names], [], list(functions))
        return frame.set_index(frame["name"].rename("run"))[list(functions)]

    def aggregate_runs(self, metric: str, *, filter: Condition | str | None = None,
                       group_by: Sequence[str] | str = (),
                       aggregations: Sequence[str] = ("avg", "std", "count"),
                       buckets_count: int = 1000, scale: str | None = None,
                       labels: Mapping[str, str] | None = None, band: str = "std",
                       start: int | None = None, end: int | None = None,
                       max_runs: int = 1000) -> pd.DataFrame:
        """A metric across the runs matching ``filter``, grouped by config values — the
        dashboard's grouped charts (mean over seeds with a band), as a DataFrame.

        On one grid of ``buckets_count`` equal-width buckets of steps over [start, end]
        (default: every step any run has), each run contributes the mean of its points in a
        bucket (an RL metric: of every environment's points there); across the group's runs
        with points in the bucket: ``avg``, sample ``std`` (ddof=1), ``stderr`` (std /
        sqrt(count)), ``min``, ``max``, ``count`` (runs), and the band's ``lo`` and ``hi``
        (``band``: ``std``, ``stderr``, ``ci95`` = avg ± 1.96·stderr, ``minmax``, or
        ``iqm95``: the interquartile mean across the runs, ``mid``, with its stratified
        bootstrap 95% interval, 2,000 repetitions seeded, rliable's sample-efficiency curves)
        and ``mid``, the curve the band is drawn around (``avg``, or the IQM for ``iqm95``).

        Returns:
            A row per group and bucket where the group has points: one column per
            ``group_by`` path (its value), ``x`` (the bucket's first step), then one column
            per aggregation.

        Raises:
            QueryRequestError: an unknown metric, path or filter; more than ``max_runs``
                runs match (narrow the filter).
        """
        paths = [group_by] if isinstance(group_by, str) else list(group_by)
        unknown = [a for a in aggregations if a not in _AGGREGATIONS]
        if unknown or isinstance(aggregations, str):
            raise ValueError(f"aggregations are some of {', '.join(_AGGREGATIONS)}; got "
                             f"{aggregations!r}")
        _check_filter(filter)
        answer = self._transport.call("aggregate_runs", self._body(
            series=series_node(metric, scale, labels), filter=_filter_body(filter),
            group_by=paths, n=buckets_count, start=start, end=end, band=band,
            max_runs=max_runs,
            # only these are sent (and the count, always); "mid" is the mean when the band
            # has no curve of its own
            aggregations=sorted({*aggregations, *(["avg"] if "mid" in aggregations else [])})))
        if answer["truncated"]:
            raise QueryRequestError(
                f"{answer['runs_matched']:,} runs match, more than max_runs={max_runs:,}: "
                "narrow the filter (or raise max_runs, up to 1,000)", status=400)
        return _frames.aggregate_frame(answer, paths, list(aggregations))

    # ------------------------------------------------------------------ statistics

    def _statistics(self, metric: str, *, summary: str, group_by: Sequence[str] | str,
                    filter: Condition | str | None, task_key: str | None,
                    normalize: tuple[float, float] | Mapping[str, tuple[float, float]] | None,
                    reps: int, seed: int, scale: str | None,
                    labels: Mapping[str, str] | None, max_runs: int, **parts: Any
                    ) -> dict[str, Any]:
        """One ``compare_groups`` request (the parts asked: aggregates, profile, improvement)."""
        _check_filter(filter)
        paths = [group_by] if isinstance(group_by, str) else list(group_by)
        if isinstance(normalize, Mapping):
            references: Any = {str(task): list(pair) for task, pair in normalize.items()}
        else:
            references = None if normalize is None else list(normalize)
        answer: dict[str, Any] = self._transport.call("compare_groups", self._body(
            series=series_node(metric, scale, labels), summary=summary,
            filter=_filter_body(filter), group_by=paths, task_key=task_key,
            normalize=references, reps=reps, seed=seed, max_runs=max_runs, **parts))
        if answer["truncated"]:
            raise QueryRequestError(
                f"{answer['runs_matched']:,} runs match, more than max_runs={max_runs:,}: "
                "narrow the filter (or raise max_runs, up to 1,000)", status=400)
        return answer

    def compare_groups(self, metric: str, *, summary: str = "last10",
                       group_by: Sequence[str] | str = (),
                       filter: Condition | str | None = None,
                       aggregates: Sequence[str] = ("iqm", "median", "mean"),
                       reps: int = 2000, seed: int = 0, task_key: str | None = None,
                       normalize: tuple[float, float] | Mapping[str, tuple[float, float]]
                       | None = None, gamma: float = 1.0, scale: str | None = None,
                       labels: Mapping[str, str] | None = None, max_runs: int = 1000
                       ) -> pd.DataFrame:
        """Aggregates of each group's scores with stratified bootstrap 95% intervals, as
        ``rliable`` computes them (Agarwal et al., 2021): is group A really better than B?

        A run's score is its ``summary`` of ``metric``: ``last10`` (an RL metric: the mean
        over environments of each one's mean of its last 10 episodes; a standard series: the
        mean of its last 10 points), ``last``, ``min``, ``max`` or ``mean``. With
        ``task_key`` (e.g. ``"config/task"``) each group's scores are a runs × tasks matrix
        (as many runs on each task) and the bootstrap resamples runs within each task;
        ``normalize`` maps each task to its (min, max) reference scores (or is one pair for
        every task): scores become ``(score - min) / (max - min)``.

        Args:
            aggregates: some of ``iqm`` (interquartile mean), ``median``, ``mean``,
                ``optimality_gap`` (how far below ``gamma`` the scores fall, on average).
            reps: bootstrap repetitions (up to 50,000); ``seed``: the same seed gives the same
                intervals (those of ``rliable`` after ``np.random.seed(seed)``).

        Returns:
            A row per group and aggregate: ``group`` (its label, e.g. ``config/algo=ppo``),
            ``aggregate``, ``value``, ``ci_low``, ``ci_high``, ``runs``.

        Raises:
            QueryRequestError: an unknown metric, path or filter; a group without a task or
                with more runs on one task than another; the server lacks the ``stats``
                extra (the message says what to install).
        """
        answer = self._statistics(
            metric, summary=summary, group_by=group_by, filter=filter, task_key=task_key,
            normalize=normalize, reps=reps, seed=seed, scale=scale, labels=labels,
            max_runs=max_runs, aggregates=list(aggregates), gamma=gamma)
        return _frames.statistics_frame(answer)

    def performance_profile(self, metric: str, *, summary: str = "last10",
                            group_by: Sequence[str] | str = (),
                            filter: Condition | str | None = None,
                            thresholds: Sequence[float] | None = None, points: int = 51,
                            reps: int = 2000, seed: int = 0, task_key: str | None = None,
                            normalize: tuple[float, float]
                            | Mapping[str, tuple[float, float]] | None = None,
                            scale: str | None = None, labels: Mapping[str, str] | None = None,
                            max_runs: int = 1000) -> pd.DataFrame:
        """Each group's performance profile: the fraction of its runs (across tasks) scoring
        above each threshold, with a stratified bootstrap 95% band (``rliable``'s score
        distributions). Scores as in :meth:`compare_groups`; ``thresholds`` default to
        ``points`` evenly spaced from the lowest score to the highest.

        Returns:
            A row per group and threshold: ``group``, ``threshold``, ``fraction``,
            ``ci_low``, ``ci_high``.
        """
        profile: dict[str, Any] = ({"points": points} if thresholds is None
                                   else {"thresholds": [float(t) for t in thresholds]})
        answer = self._statistics(
            metric, summary=summary, group_by=group_by, filter=filter, task_key=task_key,
            normalize=normalize, reps=reps, seed=seed, scale=scale, labels=labels,
            max_runs=max_runs, aggregates=["mean"], profile=profile)
        return _frames.profile_frame(answer)

    def probability_of_improvement(self, metric: str, group_x: Any = None, group_y: Any = None,
                                   *, summary: str = "last10",
                                   group_by: Sequence[str] | str = (),
                                   filter: Condition | str | None = None, reps: int = 2000,
                                   seed: int = 0, task_key: str | None = None,
                                   normalize: tuple[float, float]
                                   | Mapping[str, tuple[float, float]] | None = None,
                                   scale: str | None = None,
                                   labels: Mapping[str, str] | None = None,
                                   max_runs: int = 1000) -> pd.DataFrame:
        """P(X > Y): the probability that a run of group X scores above a run of group Y
        (ties count half; averaged over tasks), with a stratified bootstrap 95% interval
        (``rliable``'s, resampling each group independently). Scores as in
        :meth:`compare_groups`.

        ``group_x`` and ``group_y`` name groups by label (``"config/algo=ppo"``), by values
        (``{"config/algo": "ppo"}``) or, grouping by one key, by its value (``"ppo"``).
        Without them: every ordered pair of groups.

        Returns:
            A row per pair: ``x``, ``y`` (labels), ``value``, ``ci_low``, ``ci_high``.
        """
        paths = [group_by] if isinstance(group_by, str) else list(group_by)
        if (group_x is None) != (group_y is None):
            raise TypeError("name both groups (group_x and group_y), or neither for every pair")
        improvement: Any = "all" if group_x is None else [
            [_group_name(group_x, paths), _group_name(group_y, paths)]]
        answer = self._statistics(
            metric, summary=summary, group_by=paths, filter=filter, task_key=task_key,
            normalize=normalize, reps=reps, seed=seed, scale=scale, labels=labels,
            max_runs=max_runs, aggregates=["mean"], improvement=improvement)
        return _frames.improvement_frame(answer)

    # ---------------------------------------------------------------------- points

    def _points(self, series: list[dict[str, Any]], rl: bool, timestamps: bool = True
                ) -> list[tuple[dict[str, Any], list[tuple[Any, Any, Any, Any]]]]:
        """Every page of ``points``: each returned series' labels and its pages' columns."""
        out: list[tuple[dict[str, Any], list[tuple[Any, Any, Any, Any]]]] = []
        cursor = None
        while True:
            page = self._transport.call("points", self._body(
                series=series, rl=rl, limit=_POINTS_PAGE, cursor=cursor, encoding="binary",
                timestamps=timestamps))
            for part in page["series"]:
                meta = {k: part[k] for k in ("position", "item", "environment", "episode",
                                             "scale", "labels") if k in part}
                columns = _frames.points_columns(part, page.get("buffer"))
                if out and out[-1][0]["position"] == meta["position"]:  # continued
                    out[-1][1].append(columns)
                else:
                    out.append((meta, [columns]))
            cursor = page["next"]
            if cursor is None:
                return out

    def fetch_float_series(self, runs: Sequence[str] | str, metrics: Sequence[str] | str, *,
                           scale: str | None = None, labels: Mapping[str, str] | None = None,
                           include_timestamps: bool = False) -> pd.DataFrame:
        """Every point of some metrics of some runs.

        Returns:
            Index ``(run, step)``, a float64 column per metric (NaN where that run has no
            point at that step, or logged a point without a value); with
            ``include_timestamps``, a ``<metric>:timestamp`` column (UTC) after each.

        Raises:
            QueryRequestError: a run does not exist, or none of the runs logged a metric.
        """
        run_names = [runs] if isinstance(runs, str) else list(runs)
        names = [metrics] if isinstance(metrics, str) else list(metrics)
        series = [{"run": run, **series_node(metric, scale, labels)}
                  for run in run_names for metric in names]
        columns: dict[tuple[int, int], tuple[Any, Any]] = {}
        times: dict[tuple[int, int], Any] = {}
        for meta, pages in self._points(series, rl=False, timestamps=include_timestamps):
            r, m = divmod(int(meta["item"]), len(names))
            columns[(r, m)] = (np.concatenate([p[0] for p in pages]),
                               np.concatenate([p[3] for p in pages]))
            if include_timestamps:
                times[(r, m)] = np.concatenate([p[2] for p in pages])
        return _frames.series_frame(run_names, names, columns,
                                    times if include_timestamps else None)

    def fetch_float_series_buckets(self, run: str, metric: str, *, buckets_count: int = 1000,
                                   start: int | None = None, end: int | None = None,
                                   scale: str | None = None,
                                   labels: Mapping[str, str] | None = None) -> pd.DataFrame:
        """A chart-sized summary of one series (the dashboard's buckets): at most
        ``buckets_count`` equal-width buckets of steps over [start, end], each with the min and
        max of every point in it (a spike is never averaged away), mean, last and count.
        A 10M-point series costs a read of its block statistics, not of its points.

        Returns:
            Index ``step`` (each bucket's first step); columns ``min``, ``max``, ``mean``,
            ``last``, ``count``, ``timestamp``.
        """
        answer = self._transport.call("buckets", self._body(
            run=run, series=series_node(metric, scale, labels), n=buckets_count, start=start,
            end=end))
        return _frames.buckets_frame(answer, ("min", "max", "mean", "last", "count"))

    # ------------------------------------------------------ histograms and point clouds

    def fetch_histogram_series(self, run: str, metric: str) -> pd.DataFrame:
        """Every histogram a run logged under ``metric`` (``log_histogram``), in step order.

        Returns:
            One row a step: ``step``, ``timestamp``, ``edges`` (a float64 array; the same
            array object for the steps that share edges), ``counts`` (an int64 array, or None
            for densities), ``densities`` (a float64 array, or None), and the stats ``min``,
            ``max``, ``sum``, ``sum_of_squares`` (NaN when not logged).
        """
        answer = self._transport.call("histograms", self._body(run=run, metric=metric))
        return _frames.histogram_frame(answer)

    def fetch_scatter_series(self, run: str, metric: str, step: int | None = None
                             ) -> pd.DataFrame:
        """The point clouds a run logged under ``metric`` (``log_scatter``/``log_scatter3d``):
        every step's, or the one at ``step``.

        Returns:
            One row a point: ``step``, ``x``, ``y`` (and ``z`` for a 3-D scatter).
        """
        answer = self._transport.call("scatter", self._body(run=run, metric=metric, step=step))
        return _frames.scatter_frame(answer)

    # ---------------------------------------------------------------- every series

    def _series_rows(self, runs: Sequence[str] | str | None) -> list[dict[str, Any]]:
        if runs is None:
            return list(self._transport.call("series", self._body(runs=None))["series"])
        names = [runs] if isinstance(runs, str) else list(runs)
        rows: list[dict[str, Any]] = []
        for start in range(0, len(names), _RUNS_PAGE):
            rows += self._transport.call(
                "series", self._body(runs=names[start:start + _RUNS_PAGE]))["series"]
        return rows

    def list_series(self, runs: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Every series of the named runs (default: of every run of the project), from the
        aggregates the server keeps (no point is read).

        Returns:
            One row per series: ``run``, ``kind`` (``standard`` or ``rl``), ``metric``,
            ``scale``, ``labels`` (a dict), ``environment`` and ``episode`` (RL), ``count``,
            ``first_step``, ``last_step`` (nullable Int64: the RL step for RL series),
            ``last_timestamp`` (UTC).

        Raises:
            QueryRequestError: a named run does not exist, or the project does not.
        """
        return _frames.series_list_frame(self._series_rows(runs))

    def fetch_run_points(self, runs: Sequence[str] | str | None = None) -> pd.DataFrame:
        """Every point of every series of the named runs (default: every run of the project),
        in long format — what ``metrana export --format parquet`` writes.

        Returns:
            One row per point: ``run``, ``kind``, ``metric``, ``scale``, ``environment``,
            ``episode`` (nullable Int64), ``step`` (int64; the ``rl_step`` of an RL point),
            ``minor_step`` (nullable Int64: an RL point's episode or environment step),
            ``value`` (float64), ``timestamp`` (UTC), then one ``labels/<key>`` column per
            label key any of the series has (None where a series lacks it).
            ``frame.to_parquet(path)`` (pyarrow, in the ``query`` extra) keeps those types.
        """
        rows = self._series_rows(runs)
        standard = [{"run": r["run"], "metric": r["metric"], "scale": r["scale"],
                     "labels": r["labels"]} for r in rows if r["kind"] == "standard"]
        rl_nodes = list(dict.fromkeys((r["run"], r["metric"]) for r in rows if r["kind"] == "rl"))
        parts: list[tuple[dict[str, Any], Any, Any, Any, Any]] = []
        for start in range(0, len(standard), _SERIES_PER_REQUEST):
            nodes = standard[start:start + _SERIES_PER_REQUEST]
            for meta, pages in self._points(nodes, rl=False):
                node = nodes[int(meta["item"])]
                x, t, v = (np.concatenate([p[i] for p in pages]) for i in (0, 2, 3))
                parts.append(({"run": node["run"], "kind": "standard", "metric": node["metric"],
                               "scale": node["scale"], "labels": node["labels"],
                               "environment": None, "episode": None}, x, None, t, v))
        for start in range(0, len(rl_nodes), _SERIES_PER_REQUEST):
            chunk = [{"run": run, "metric": metric}
                     for run, metric in rl_nodes[start:start + _SERIES_PER_REQUEST]]
            for meta, pages in self._points(chunk, rl=True):
                node = chunk[int(meta["item"])]
                x, minor, t, v = (np.concatenate([p[i] for p in pages]) for i in range(4))
                parts.append(({"run": node["run"], "kind": "rl", "metric": node["metric"],
                               "scale": meta["scale"], "labels": meta["labels"],
                               "environment": meta["environment"], "episode": meta["episode"]},
                              x, minor, t, v))
        return _frames.long_points_frame(parts)

    # -------------------------------------------------------------------------- RL

    def fetch_rl_env_float_series(self, run: str, metric: str, *, scale: str | None = None
                                  ) -> pd.DataFrame:
        """Every point of an RL metric, every environment (and episode) of a run.

        Returns:
            Long format, one row per point: ``environment``, ``scale``, ``episode`` (nullable),
            ``rl_step``, ``minor_step`` (the episode or environment step), ``value``,
            ``timestamp``. ``frame.pivot_table(index="rl_step", columns="environment",
            values="value")`` puts environments side by side.
        """
        node: dict[str, Any] = {"run": run, "metric": metric}
        if scale is not None:
            node["scale"] = scale
        rows = []
        for meta, pages in self._points([node], rl=True):
            x, minor, t, v = (np.concatenate([p[i] for p in pages]) for i in range(4))
            rows.append((meta, x, minor, t, v))
        return _frames.rl_points_frame(rows)

    def aggregate_rl_env_series(self, run: str, metric: str, *, buckets_count: int = 1000,
                                start: int | None = None, end: int | None = None,
                                scale: str | None = None, evaluation: bool | None = None) -> pd.DataFrame:
        """An RL metric reduced across environments — the band the dashboard draws: per
        bucket of ``rl_step``, the mean, standard deviation, min and max of every value of
        every environment in it, and how many there were.

        Each bucket is one ``rl_step`` when ``buckets_count`` is at least the number of steps
        in [start, end] and the range holds at most 32 points a bucket (the server then
        reduces the points themselves); beyond that it reduces 128-point blocks, whose min,
        max and count are still exact but which may span neighbouring steps.

        Returns:
            Index ``rl_step`` (each bucket's first step); columns ``mean``, ``std``, ``min``,
            ``max``, ``count``, ``timestamp``.
        """
        answer = self._transport.call("band", self._body(
            run=run, metric=metric, scale=scale, evaluation=evaluation, n=buckets_count,
            start=start, end=end))
        return _frames.band_frame(answer)

    def fetch_distributed_series(self, run: str, metric: str, *, labels: Mapping[str, str] | None = None,
                                 buckets_count: int = 1000, start: int | None = None,
                                 end: int | None = None, scale: str | None = None) -> pd.DataFrame:
        """A series every process of a job wrote with ``log_distributed``, merged across
        its writers: per step the ``mean`` across writers, their ``min``, ``max``, ``std``
        and ``count`` (how many writers' points).

        Each row is one step when ``buckets_count`` is at least the number of steps in
        [start, end] and the range holds at most 50,000 points (every writer's); beyond that a
        row is a bucket of steps holding a 128-point block of each writer (the mean of every
        writer's points in it; min, max and count exact), so there may be fewer rows.
        Each writer's own points: :meth:`fetch_float_series` (its series has the label
        ``writer``).

        Returns:
            Index ``step`` (each bucket's first step); columns ``mean``, ``std``, ``min``,
            ``max``, ``count``, ``timestamp``; ``attrs["writers"]``: the writers' ids.
        """
        answer = self._transport.call("merged", self._body(
            run=run, metric=metric, labels=dict(labels) if labels else None, scale=scale,
            n=buckets_count, start=start, end=end))
        frame = _frames.band_frame(answer)
        frame.index.name = "step"
        frame.attrs["writers"] = [w["writer"] for w in answer["writers"]]
        return frame

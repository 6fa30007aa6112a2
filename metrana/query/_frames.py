"""Answers of the query routes as pandas DataFrames (the only module that builds them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["aggregate_frame", "band_frame", "buckets_frame", "improvement_frame",
           "long_points_frame", "points_columns", "profile_frame", "rl_points_frame",
           "runs_frame", "series_frame", "series_list_frame", "statistics_frame"]

_NONFINITE = {"NaN": np.nan, "Infinity": np.inf, "-Infinity": -np.inf, None: np.nan}


def _float(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, str):
        return float(_NONFINITE.get(value, np.nan))
    return float(value)


def _time(ns: Any) -> Any:
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def runs_frame(runs: list[dict[str, Any]], attributes: Sequence[str],
               summary_columns: Sequence[str]) -> Any:
    """One row per run: name, experiment, created, last_activity, status, then each attribute
    (None where a run lacks it), then each summary (float64, NaN where a run lacks it; a
    ``count`` is a number of points: nullable Int64, <NA> where a run lacks the series)."""
    data: dict[str, Any] = {
        "name": [r["name"] for r in runs],
        "experiment": [r["experiment"] for r in runs],
        "created": _time([r["created_ns"] for r in runs]),
        "last_activity": _time([r["last_activity_ns"] for r in runs]),
        "status": [r["status"] for r in runs],
    }
    for i, path in enumerate(attributes):
        values = [_attribute(r["attributes"][i]) for r in runs]
        data[path] = pd.Series(values, dtype=_dtype(values))
    for i, column in enumerate(summary_columns):
        numbers = np.array([_float(r["summaries"][i]) for r in runs], dtype=np.float64)
        if column == "count" or column.endswith(":count"):  # the function is after the last ':'
            data[column] = pd.array([None if v != v else int(v) for v in numbers], dtype="Int64")
        else:
            data[column] = numbers
    return pd.DataFrame(data)


def _attribute(value: Any) -> Any:
    """An attribute value as sent: a non-finite float comes tagged, ``{"float": "NaN"}``."""
    if isinstance(value, dict) and "float" in value:
        return _float(value["float"])
    return value


def _dtype(values: list[Any]) -> Any:
    """float64 for numbers (ints too, once a run lacks one: NaN), else object."""
    present = [v for v in values if v is not None]
    if present and all(type(v) in (int, float) for v in present):
        if all(type(v) is int for v in present) and len(present) == len(values):
            return np.int64
        return np.float64
    return object


def points_columns(part: dict[str, Any], buffer: Any = None) -> tuple[Any, Any, Any, Any]:
    """(x, minor, t, v) numpy columns of one page of one series (minor and t None when not
    sent); NaN for a point without a value. A binary answer's columns are views of its
    ``buffer``; a JSON answer carries the non-finite values apart."""
    binary = part.get("binary")
    if binary is not None:
        def column(name: str, dtype: str) -> Any:
            if name not in binary:
                return None
            offset, count = binary[name]
            return np.frombuffer(buffer, dtype=dtype, count=count, offset=offset)

        return column("x", "<i8"), column("minor", "<i8"), column("t", "<i8"), column("v", "<f8")
    x = np.asarray(part["x"], dtype=np.int64)
    v = np.asarray(part["v"], dtype=np.float64)
    for index, spelt in part.get("special", ()):
        v[index] = _NONFINITE[spelt]
    minor = np.asarray(part["minor"], dtype=np.int64) if "minor" in part else None
    t = np.asarray(part["t"], dtype=np.int64) if "t" in part else None
    return x, minor, t, v


def series_frame(runs: Sequence[str], metrics: Sequence[str],
                 columns: dict[tuple[int, int], tuple[Any, Any]],
                 timestamps: dict[tuple[int, int], Any] | None) -> Any:
    """Index (run, step), a column per metric (NaN where a run has no point at a step); with
    timestamps, a ``<metric>:timestamp`` column after each metric."""
    frames = []
    keys = []
    for r, run in enumerate(runs):
        series = {}
        for m, metric in enumerate(metrics):
            found = columns.get((r, m))
            if found is None:
                continue
            x, v = found
            series[metric] = pd.Series(v, index=pd.Index(x, name="step"))
            if timestamps is not None:
                series[f"{metric}:timestamp"] = pd.Series(
                    _time(timestamps[(r, m)]), index=pd.Index(x, name="step"))
        if not series:
            continue
        if len(series) == 1:
            frame = pd.DataFrame(series)
        else:
            frame = pd.concat(series, axis=1).sort_index()
        frames.append(frame)
        keys.append(run)
    wanted = [c for m in metrics for c in ([m, f"{m}:timestamp"] if timestamps is not None
                                            else [m])]
    if not frames:
        index = pd.MultiIndex.from_arrays([[], []], names=["run", "step"])
        return pd.DataFrame({c: pd.Series([], dtype=np.float64) for c in wanted}, index=index)
    # The (run, step) index from codes: pd.concat(keys=...) would check 1M steps for
    # uniqueness and factorize them again (a tenth of a second).
    steps = np.concatenate([np.asarray(f.index, dtype=np.int64) for f in frames])
    runs_code = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    levels, codes = np.unique(steps, return_inverse=True)
    index = pd.MultiIndex(levels=[keys, levels], codes=[runs_code, codes.reshape(-1)],
                          names=["run", "step"], verify_integrity=False)
    data = {c: np.concatenate([_column(f, c) for f in frames]) for c in wanted}
    return pd.DataFrame(data, index=index)


def _column(frame: Any, name: str) -> Any:
    if name in frame.columns:
        return frame[name].to_numpy()
    if name.endswith(":timestamp"):
        return np.full(len(frame), np.datetime64("NaT"), dtype="datetime64[ns]")
    return np.full(len(frame), np.nan)


def rl_points_frame(rows: list[tuple[dict[str, Any], Any, Any, Any, Any]]) -> Any:
    """Long format: environment, scale, evaluation, episode, rl_step, minor_step, value,
    timestamp."""
    n = [len(x) for _, x, _, _, _ in rows]
    if not rows:
        return pd.DataFrame({"environment": [], "scale": [], "evaluation": [], "episode": [],
                             "rl_step": [],
                             "minor_step": [], "value": [], "timestamp": []})
    return pd.DataFrame({
        "environment": np.repeat([m["environment"] for m, *_ in rows], n),
        "scale": np.repeat([m["scale"] for m, *_ in rows], n),
        "evaluation": np.repeat([m["labels"].get("evaluation") == "true" for m, *_ in rows], n),
        "episode": pd.array(np.repeat([m["episode"] for m, *_ in rows], n), dtype="Int64"),
        "rl_step": np.concatenate([x for _, x, _, _, _ in rows]),
        "minor_step": np.concatenate([minor for _, _, minor, _, _ in rows]),
        "value": np.concatenate([v for _, _, _, _, v in rows]),
        "timestamp": _time(np.concatenate([t for _, _, _, t, _ in rows])),
    })


def buckets_frame(answer: dict[str, Any], columns: Sequence[str]) -> Any:
    """Index: each bucket's first step; ``columns`` as float64 (count as int64)."""
    data: dict[str, Any] = {}
    for name in columns:
        if name == "count":
            data[name] = np.asarray(answer["count"], dtype=np.int64)
        else:
            data[name] = np.array([_float(v) for v in answer[name]], dtype=np.float64)
    data["timestamp"] = _time(answer["t"])
    return pd.DataFrame(data, index=pd.Index(np.asarray(answer["x"], dtype=np.int64),
                                             name="step"))


def band_frame(answer: dict[str, Any]) -> Any:
    frame = buckets_frame(answer, ("mean", "std", "min", "max", "count"))
    frame.index.name = "rl_step"
    return frame


def _nullable_int(values: list[Any]) -> Any:
    return pd.array(values, dtype="Int64")


def series_list_frame(rows: list[dict[str, Any]]) -> Any:
    """One row per series: run, kind, metric, scale, labels, environment, episode, count,
    first_step, last_step, last_timestamp."""
    return pd.DataFrame({
        "run": pd.Series([r["run"] for r in rows], dtype=object),
        "kind": pd.Series([r["kind"] for r in rows], dtype=object),
        "metric": pd.Series([r["metric"] for r in rows], dtype=object),
        "scale": pd.Series([r["scale"] for r in rows], dtype=object),
        "labels": pd.Series([r["labels"] for r in rows], dtype=object),
        "environment": pd.Series([r["environment"] for r in rows], dtype=object),
        "episode": _nullable_int([r["episode"] for r in rows]),
        "count": np.array([r["count"] for r in rows], dtype=np.int64),
        "first_step": _nullable_int([r["first_step"] for r in rows]),
        "last_step": _nullable_int([r["last_step"] for r in rows]),
        "last_timestamp": pd.to_datetime(pd.array([r["last_timestamp_ns"] for r in rows],
                                                  dtype="Int64"), unit="ns", utc=True),
    })


LONG_COLUMNS = ("run", "kind", "metric", "scale", "environment", "episode", "step",
                "minor_step", "value", "timestamp")


def long_points_frame(parts: list[tuple[dict[str, Any], Any, Any, Any, Any]]) -> Any:
    """Points of many series in long format: each part is (series, x, minor or None, t, v);
    a ``labels/<key>`` column per label key (None where a series lacks it)."""
    counts = [len(x) for _, x, _, _, _ in parts]

    def repeat(values: list[Any]) -> Any:
        out = np.empty(sum(counts), dtype=object)
        position = 0
        for value, n in zip(values, counts, strict=True):
            out[position:position + n] = value
            position += n
        return out

    metas = [m for m, *_ in parts]
    minor = [np.full(n, -1, dtype=np.int64) if m is None else m
             for (_, _, m, _, _), n in zip(parts, counts, strict=True)]
    has_minor = np.concatenate([np.full(n, m["kind"] == "rl") for m, n in
                                zip(metas, counts, strict=True)]) if parts else np.zeros(0, bool)
    minor_all = np.concatenate(minor) if parts else np.zeros(0, np.int64)
    episodes = repeat([m["episode"] for m in metas])
    data: dict[str, Any] = {
        "run": repeat([m["run"] for m in metas]),
        "kind": repeat([m["kind"] for m in metas]),
        "metric": repeat([m["metric"] for m in metas]),
        "scale": repeat([m["scale"] for m in metas]),
        "environment": repeat([m["environment"] for m in metas]),
        "episode": pd.array(list(episodes), dtype="Int64"),
        "step": np.concatenate([x for _, x, _, _, _ in parts]).astype(np.int64) if parts
        else np.zeros(0, np.int64),
        "minor_step": pd.arrays.IntegerArray(minor_all, ~has_minor),
        "value": np.concatenate([v for *_, v in parts]).astype(np.float64) if parts
        else np.zeros(0, np.float64),
        "timestamp": _time(np.concatenate([t for _, _, _, t, _ in parts]) if parts
                           else np.zeros(0, np.int64)),
    }
    keys = sorted({key for m in metas for key in m["labels"]})
    for key in keys:
        data[f"labels/{key}"] = repeat([m["labels"].get(key) for m in metas])
    return pd.DataFrame(data)


def histogram_frame(answer: dict[str, Any]) -> Any:
    """``histograms``' answer as one row a step (edges shared as one array object each)."""
    edges = [np.array(e, dtype=np.float64) for e in answer["edges"]]
    points = answer["points"]
    stats = [p["stats"] or [np.nan] * 4 for p in points]
    return pd.DataFrame({
        "step": np.array([p["step"] for p in points], dtype=np.int64),
        "timestamp": pd.to_datetime(np.array([p["t"] for p in points], dtype=np.int64),
                                    unit="ns", utc=True),
        "edges": pd.Series([edges[p["edges"]] for p in points], dtype=object),
        "counts": pd.Series([None if p["counts"] is None else np.array(p["counts"], np.int64)
                             for p in points], dtype=object),
        "densities": pd.Series([None if p["densities"] is None
                                else np.array(p["densities"], np.float64) for p in points],
                               dtype=object),
        **{name: np.array([s[i] for s in stats], dtype=np.float64)
           for i, name in enumerate(("min", "max", "sum", "sum_of_squares"))},
    })


def scatter_frame(answer: dict[str, Any]) -> Any:
    """``scatter``'s answer as one row a point."""
    points = answer["points"]
    three_d = answer["series"]["kind"] == "scatter3d"
    columns: dict[str, Any] = {
        "step": np.concatenate([np.full(len(p["xs"]), p["step"], np.int64) for p in points])
        if points else np.empty(0, np.int64)}
    for axis in ("x", "y", "z") if three_d else ("x", "y"):
        columns[axis] = (np.concatenate([np.array(p[axis + "s"], np.float64) for p in points])
                         if points else np.empty(0, np.float64))
    return pd.DataFrame(columns)


def aggregate_frame(answer: dict[str, Any], group_by: Sequence[str],
                    aggregations: Sequence[str]) -> Any:
    """``aggregate_runs``: a row per (group, bucket) where the group has runs with points;
    the group's values of ``group_by``, ``x`` (the bucket's first step), then each
    aggregation (float64; ``count``, of runs, int64)."""
    x = np.asarray(answer["x"], dtype=np.int64)
    parts = []
    for group in answer["groups"]:
        count = np.asarray(group["count"], dtype=np.int64)
        keep = count > 0
        data: dict[str, Any] = {path: [_attribute(group["key"][path])] * int(keep.sum())
                                for path in group_by}
        data["x"] = x[keep]
        for name in aggregations:
            if name == "count":
                data[name] = count[keep]
            else:  # "mid": the band's centre, the mean unless the band has its own
                values = group.get(name, group["avg"]) if name == "mid" else group[name]
                data[name] = np.array([_float(v) for v in values], np.float64)[keep]
        parts.append(pd.DataFrame(data))
    if not parts:
        empty: dict[str, Any] = {path: pd.Series([], dtype=object) for path in group_by}
        empty["x"] = pd.Series([], dtype=np.int64)
        for name in aggregations:
            empty[name] = pd.Series([], dtype=np.int64 if name == "count" else np.float64)
        return pd.DataFrame(empty)
    return pd.concat(parts, ignore_index=True)


def statistics_frame(answer: dict[str, Any]) -> Any:
    """``compare_groups``: a row per (group, aggregate): the group's label, the aggregate,
    its value and 95% interval, and the group's number of runs."""
    rows = [(group["label"], name, _float(stat["value"]), _float(stat["ci_low"]),
             _float(stat["ci_high"]), int(group["runs"]))
            for group in answer["groups"] for name, stat in group["aggregates"].items()]
    return pd.DataFrame(rows, columns=["group", "aggregate", "value", "ci_low", "ci_high",
                                       "runs"]).astype({"runs": np.int64})


def profile_frame(answer: dict[str, Any]) -> Any:
    """``performance_profile``: a row per (group, threshold): the fraction of the group's
    runs scoring above the threshold, and its 95% interval."""
    thresholds = np.asarray(answer["profile"]["thresholds"], np.float64)
    parts = [pd.DataFrame({"group": [curve["label"]] * len(thresholds), "threshold": thresholds,
                           **{name: np.asarray(curve[name], np.float64)
                              for name in ("fraction", "ci_low", "ci_high")}})
             for curve in answer["profile"]["groups"]]
    if not parts:
        return pd.DataFrame({"group": pd.Series([], dtype=object),
                             **{name: pd.Series([], dtype=np.float64)
                                for name in ("threshold", "fraction", "ci_low", "ci_high")}})
    return pd.concat(parts, ignore_index=True)


def improvement_frame(answer: dict[str, Any]) -> Any:
    """``probability_of_improvement``: a row per (X, Y) pair: P(X > Y) and its interval."""
    return pd.DataFrame([(p["x"], p["y"], float(p["value"]), float(p["ci_low"]),
                          float(p["ci_high"])) for p in answer["improvement"]],
                        columns=["x", "y", "value", "ci_low", "ci_high"])

"""``fetch_runs`` on real servers (SQLite and PostgreSQL): columns, every filter operator and
ordering, pages, and bad filters — each checked against values computed from what was logged."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pandas as pd
import pytest

from metrana.query import (
    AttrFilter,
    AttrOrderBy,
    Condition,
    OrderBy,
    QueryClient,
    QueryRequestError,
    SeriesFilter,
    SeriesOrderBy,
    SeriesSummary,
)
from metrana.server import ServerInfo
from tests.query.data import KNOWN, PROJECT, WORKSPACE, KnownRun

FUNCTIONS = ("last", "min", "max", "mean", "count")


def names(frame: Any) -> list[str]:
    return list(frame["name"])


def test_one_row_per_run_with_attributes_and_summaries(client: QueryClient) -> None:
    """Every run, newest first, with its config values and the summaries of its series."""
    paths = ["config/lr", "config/optimizer", "config/batch_size", "config/augment",
             "config/model/depth", "config/warmup"]
    summaries = [SeriesSummary(m, fn) for m in ("loss", "acc") for fn in FUNCTIONS]
    frame = client.fetch_runs(attributes=paths, series_summaries=summaries)
    assert names(frame) == [run.name for run in reversed(KNOWN)]
    assert list(frame.columns) == ["name", "experiment", "created", "last_activity", "status",
                                   *paths, *(s.column for s in summaries)]
    assert (frame["status"] == "finished").all()
    assert frame["created"].is_monotonic_decreasing
    for _, row in frame.iterrows():
        run = KNOWN[int(row["name"].split("-")[1])]
        assert row["experiment"] == run.experiment
        for path in paths:
            expected = run.attribute(path)
            if expected is None:
                assert row[path] is None or math.isnan(row[path]), (run.name, path)
            else:
                assert row[path] == expected, (run.name, path)
        for s in summaries:
            expected = run.summary(s.series["metric"], s.fn)
            if expected is None:
                assert pd.isna(row[s.column]), (run.name, s.column)
            else:
                assert row[s.column] == pytest.approx(expected, rel=1e-12), (run.name, s.column)


def _v(run: KnownRun, metric: str, fn: str) -> float:
    """A summary for a predicate: NaN (compares false) when the run lacks it."""
    value = run.summary(metric, fn)
    return math.nan if value is None else value


FILTERS: list[tuple[str, Callable[[], Condition], Callable[[KnownRun], bool]]] = [
    ("lr <", lambda: AttrFilter("config/lr") < 0.01, lambda r: r.config["lr"] < 0.01),
    ("lr <=", lambda: AttrFilter("config/lr") <= 0.01, lambda r: r.config["lr"] <= 0.01),
    ("lr >", lambda: AttrFilter("config/lr") > 0.01, lambda r: r.config["lr"] > 0.01),
    ("lr >=", lambda: AttrFilter("config/lr") >= 0.03, lambda r: r.config["lr"] >= 0.03),
    ("lr ==", lambda: AttrFilter("config/lr") == 0.003, lambda r: r.config["lr"] == 0.003),
    ("lr !=", lambda: AttrFilter("config/lr") != 0.003, lambda r: r.config["lr"] != 0.003),
    ("int vs float", lambda: AttrFilter("config/batch_size") > 40.5,
     lambda r: r.config["batch_size"] > 40.5),
    ("nested", lambda: AttrFilter("config/model/depth") == 5,
     lambda r: r.config["model"]["depth"] == 5),
    ("string ==", lambda: AttrFilter("config/optimizer") == "sgd",
     lambda r: r.config["optimizer"] == "sgd"),
    ("string !=", lambda: AttrFilter("config/optimizer") != "sgd",
     lambda r: r.config["optimizer"] != "sgd"),
    ("string <", lambda: AttrFilter("config/optimizer") < "adamw",
     lambda r: r.config["optimizer"] < "adamw"),
    ("is_in strings", lambda: AttrFilter("config/optimizer").is_in(["adamw", "sgd"]),
     lambda r: r.config["optimizer"] in ("adamw", "sgd")),
    ("not_in numbers", lambda: AttrFilter("config/batch_size").not_in([32, 96]),
     lambda r: r.config["batch_size"] not in (32, 96)),
    ("bool", lambda: AttrFilter("config/augment") == True,  # noqa: E712 - builds a filter
     lambda r: r.config["augment"] is True),
    ("exists", lambda: AttrFilter("config/warmup").exists(), lambda r: "warmup" in r.config),
    ("missing never compares", lambda: AttrFilter("config/warmup") != 200,
     lambda r: "warmup" in r.config and r.config["warmup"] != 200),
    ("name", lambda: AttrFilter("sys/name").is_in(["run-2", "run-5"]),
     lambda r: r.name in ("run-2", "run-5")),
    ("experiment", lambda: AttrFilter("sys/experiment") == "exp-b",
     lambda r: r.experiment == "exp-b"),
    ("last <", lambda: SeriesFilter("loss").last() < 0.02,
     lambda r: _v(r, "loss", "last") < 0.02),
    ("min >", lambda: SeriesFilter("loss").min() > 0.015,
     lambda r: _v(r, "loss", "min") > 0.015),
    ("max <=", lambda: SeriesFilter("loss").max() <= 4.0,
     lambda r: _v(r, "loss", "max") <= 4.0),
    ("mean >= (NaN not counted)", lambda: SeriesFilter("loss").mean() >= 1.01,
     lambda r: _v(r, "loss", "mean") >= 1.01),
    ("count ==", lambda: SeriesFilter("loss").count() == 60,
     lambda r: r.summary("loss", "count") == 60),
    ("series exists", lambda: SeriesFilter("acc").exists(), lambda r: "acc" in r.series),
    ("series missing never compares", lambda: SeriesFilter("acc").max() > 0.0,
     lambda r: "acc" in r.series),
    ("and", lambda: (AttrFilter("config/lr") < 0.05) & (AttrFilter("config/optimizer") == "adam"),
     lambda r: r.config["lr"] < 0.05 and r.config["optimizer"] == "adam"),
    ("or", lambda: (AttrFilter("config/lr") > 0.05) | (SeriesFilter("loss").last() < 0.012),
     lambda r: r.config["lr"] > 0.05 or _v(r, "loss", "last") < 0.012),
    ("nested and/or", lambda: ((AttrFilter("config/lr") < 0.05) | AttrFilter("config/warmup")
                               .exists()) & (SeriesFilter("acc").last() > 0.5),
     lambda r: (r.config["lr"] < 0.05 or "warmup" in r.config)
     and _v(r, "acc", "last") > 0.5),
]


@pytest.mark.parametrize(("label", "condition", "predicate"), FILTERS,
                         ids=[f[0] for f in FILTERS])
def test_filters_select_the_runs_python_selects(
        client: QueryClient, label: str, condition: Callable[[], Condition],
        predicate: Callable[[KnownRun], bool]) -> None:
    expected = {run.name for run in KNOWN if predicate(run)}
    assert 0 < len(expected) < len(KNOWN), f"{label}: the data must split the runs"
    assert set(names(client.fetch_runs(filter=condition()))) == expected


def _sorted(key: Callable[[KnownRun], Any], descending: bool) -> list[str]:
    """Runs in order of ``key`` (runs without one last), ties in creation order."""
    present = [r for r in KNOWN if key(r) is not None]
    absent = [r.name for r in KNOWN if key(r) is None]
    ordered = sorted(present, key=lambda r: r.index)
    ordered.sort(key=key, reverse=descending)  # stable either way: ties keep creation order
    return [r.name for r in ordered] + absent


ORDERS: list[tuple[str, Callable[[], OrderBy], Callable[[KnownRun], Any], bool]] = [
    ("lr asc", lambda: AttrOrderBy("config/lr").asc(), lambda r: r.config["lr"], False),
    ("lr desc", lambda: AttrOrderBy("config/lr").desc(), lambda r: r.config["lr"], True),
    ("optimizer asc", lambda: AttrOrderBy("config/optimizer").asc(),
     lambda r: r.config["optimizer"], False),
    ("warmup desc (some lack it)", lambda: AttrOrderBy("config/warmup").desc(),
     lambda r: r.config.get("warmup"), True),
    ("acc max desc (one lacks it)", lambda: SeriesOrderBy("acc", "max").desc(),
     lambda r: r.summary("acc", "max"), True),
    ("loss last asc", lambda: SeriesOrderBy("loss", "last").asc(),
     lambda r: r.summary("loss", "last"), False),
    ("loss count desc", lambda: SeriesOrderBy("loss", "count").desc(),
     lambda r: r.summary("loss", "count"), True),
    ("name desc", lambda: AttrOrderBy("sys/name").desc(), lambda r: r.name, True),
]


@pytest.mark.parametrize(("label", "order", "key", "descending"), ORDERS,
                         ids=[o[0] for o in ORDERS])
def test_orderings_sort_as_python_sorts(client: QueryClient, label: str,
                                        order: Callable[[], OrderBy],
                                        key: Callable[[KnownRun], Any], descending: bool) -> None:
    assert names(client.fetch_runs(order_by=order())) == _sorted(key, descending)


@pytest.mark.parametrize("order", [None, {"attr": "config/warmup", "dir": "desc"},
                                   {"attr": "config/optimizer", "dir": "asc"},
                                   {"attr": "config/augment", "dir": "desc"},
                                   {"attr": "sys/name", "dir": "desc"},
                                   {"series": {"metric": "acc"}, "fn": "max", "dir": "asc"}])
def test_pages_follow_one_another_without_gap_or_repeat(known_server: ServerInfo,
                                                         client: QueryClient,
                                                         order: dict[str, Any] | None) -> None:
    """Pages of 3 (through the cursor, nulls included) add up to the one-page answer."""
    body = {"workspace": WORKSPACE, "project": PROJECT, "order_by": order, "limit": 3}
    seen: list[str] = []
    cursor = None
    with httpx.Client(base_url=known_server.url) as http:
        for _ in range(10):
            page = http.post("/api/query/runs", json={**body, "cursor": cursor}).json()
            assert len(page["runs"]) <= 3
            seen += [run["name"] for run in page["runs"]]
            cursor = page["next"]
            if cursor is None:
                break
        whole = http.post("/api/query/runs", json={**body, "limit": 1000}).json()
    assert seen == [run["name"] for run in whole["runs"]]
    assert sorted(seen) == sorted(run.name for run in KNOWN)


def test_runs_of_one_experiment(client: QueryClient) -> None:
    frame = client.fetch_runs(experiment="exp-b", filter=AttrFilter("config/lr") < 0.001)
    assert set(names(frame)) == {r.name for r in KNOWN
                                 if r.experiment == "exp-b" and r.config["lr"] < 0.001}
    assert names(client.fetch_runs(experiment="exp-z")) == []  # a name, not a path: no error


def test_max_runs_keeps_the_first_in_order(client: QueryClient) -> None:
    frame = client.fetch_runs(order_by=AttrOrderBy("config/lr").asc(), max_runs=3)
    assert names(frame) == _sorted(lambda r: r.config["lr"], False)[:3]


BAD: list[tuple[Callable[[QueryClient], Any], str]] = [
    (lambda c: c.fetch_runs(filter=AttrFilter("config/lrr") < 0.1), "unknown attribute 'config/lrr'"),
    (lambda c: c.fetch_runs(filter=AttrFilter("config/optimizer") < 3),
     "'config/optimizer' holds string values; it cannot be compared with number"),
    (lambda c: c.fetch_runs(filter=AttrFilter("config/lr") == "fast"),
     "'config/lr' holds float values; it cannot be compared with string"),
    (lambda c: c.fetch_runs(filter=AttrFilter("config/augment") > True), "is a boolean"),
    (lambda c: c.fetch_runs(filter=SeriesFilter("los").last() < 1), "unknown series 'los'"),
    (lambda c: c.fetch_runs(filter=AttrFilter("sys/owner") == "me"), "unknown run field 'sys/owner'"),
    (lambda c: c.fetch_runs(order_by=AttrOrderBy("config/nope").asc()), "unknown attribute 'config/nope'"),
    (lambda c: c.fetch_runs(attributes=["config/nope"]), "unknown attribute 'config/nope'"),
    (lambda c: c.fetch_runs(series_summaries=["accuracy:max"]), "unknown series 'accuracy'"),
    (lambda c: c.fetch_float_series("run-0", "los"), "unknown series 'los'"),
    (lambda c: c.fetch_float_series(["run-0", "run-99"], "loss"), "no run 'run-99'"),
    (lambda c: c.fetch_float_series_buckets("run-5", "acc"), "has no series 'acc'"),
    (lambda c: c.aggregate_rl_env_series("run-0", "reward"), "no RL series 'reward'"),
]


@pytest.mark.parametrize(("call", "message"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_questions_are_refused_with_what_is_wrong(client: QueryClient,
                                                      call: Callable[[QueryClient], Any],
                                                      message: str) -> None:
    with pytest.raises(QueryRequestError, match=".*".join(map(_escape, message.split()))) as info:
        call(client)
    assert info.value.status in (400, 404)


def _escape(word: str) -> str:
    import re

    return re.escape(word)


def test_bad_filter_over_http_is_a_400_with_a_message(known_server: ServerInfo) -> None:
    with httpx.Client(base_url=known_server.url) as http:
        answer = http.post("/api/query/runs", json={
            "workspace": WORKSPACE, "project": PROJECT,
            "filter": {"attr": "config/lr", "op": "~", "value": 1}})
        assert answer.status_code == 400
        assert "unknown operator '~'" in answer.json()["message"]
        answer = http.post("/api/query/runs", json={"workspace": WORKSPACE, "project": "nope"})
        assert answer.status_code == 404
        assert "project query/nope does not exist" in answer.json()["message"]
        assert http.get("/api/query/runs").status_code == 405


def test_values_travel_as_parameters_never_as_sql(client: QueryClient) -> None:
    """A value or path that looks like SQL is compared as text, and matches nothing."""
    sneaky = "x' OR '1'='1"
    assert names(client.fetch_runs(filter=AttrFilter("config/optimizer") == sneaky)) == []
    with pytest.raises(QueryRequestError, match="unknown attribute"):
        client.fetch_runs(filter=AttrFilter("config/lr' OR 1=1 --") < 1)


def test_summaries_of_named_runs(client: QueryClient) -> None:
    chosen = ["run-6", "run-1", "run-5"]
    frame = client.fetch_series_summaries(chosen, "acc", functions=["min", "max", "mean",
                                                                    "count", "last"])
    assert list(frame.index) == chosen
    assert str(frame["count"].dtype) == "Int64" and str(frame["mean"].dtype) == "float64"
    for name in chosen:
        run = KNOWN[int(name.split("-")[1])]
        for fn in ("min", "max", "mean", "count", "last"):
            expected = run.summary("acc", fn)
            if expected is None:
                assert pd.isna(frame.loc[name, fn])
            else:
                assert frame.loc[name, fn] == pytest.approx(expected, rel=1e-12)
    with pytest.raises(QueryRequestError, match="no run 'run-42'"):
        client.fetch_series_summaries(["run-42"], "acc")

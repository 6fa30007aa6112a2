"""Points, buckets, and the RL reduction across environments, on real servers (SQLite and
PostgreSQL), against the values logged; page boundaries of the points route."""

from __future__ import annotations

import math
import statistics
from typing import Any

import httpx
import pytest

import metrana
from metrana.query import AttrFilter, AttrOrderBy, QueryClient, SeriesFilter
from metrana.server import ServerInfo
from tests.query.data import ENVS, KNOWN, NAN_AT, PROJECT, RL_STEPS, WORKSPACE, rl_value


def same(actual: list[float], expected: list[float]) -> bool:
    """Equal floats, NaN where NaN."""
    return len(actual) == len(expected) and all(
        (math.isnan(a) and math.isnan(e)) or a == e for a, e in zip(actual, expected, strict=True))


def test_points_of_several_runs_and_metrics(client: QueryClient) -> None:
    """Index (run, step), a column per metric; NaN where a run did not log a metric or a point
    has no number."""
    runs = ["run-6", "run-5", "run-0"]
    frame = client.fetch_float_series(runs, ["loss", "acc"])
    assert list(frame.columns) == ["loss", "acc"]
    assert list(frame.index.names) == ["run", "step"]
    assert list(dict.fromkeys(frame.index.get_level_values("run"))) == runs
    for name in runs:
        run = KNOWN[int(name.split("-")[1])]
        part = frame.loc[name]
        assert list(part.index) == list(range(len(run.series["loss"])))
        assert same(part["loss"].tolist(), run.series["loss"])
        if "acc" in run.series:
            assert same(part["acc"].tolist(), run.series["acc"])
        else:
            assert part["acc"].isna().all()
    assert math.isnan(frame.loc[("run-6", NAN_AT), "loss"])


def test_points_with_timestamps(client: QueryClient) -> None:
    frame = client.fetch_float_series("run-1", "loss", include_timestamps=True)
    assert list(frame.columns) == ["loss", "loss:timestamp"]
    stamps = frame["loss:timestamp"]
    assert stamps.is_monotonic_increasing and str(stamps.dt.tz) == "UTC"


@pytest.mark.parametrize("limit", [1, 7, 40, 41, 1000])
def test_point_pages_cover_every_point_once(known_server: ServerInfo, limit: int) -> None:
    """Pages cut anywhere (inside a series, at its end) add up to every point, in order."""
    series = [{"run": f"run-{i}", "metric": "loss"} for i in (0, 1)]
    got: dict[int, list[int]] = {0: [], 1: []}
    cursor = None
    with httpx.Client(base_url=known_server.url) as http:
        for _ in range(200):
            page = http.post("/api/query/points", json={
                "workspace": WORKSPACE, "project": PROJECT, "series": series, "limit": limit,
                "cursor": cursor}).json()
            assert sum(len(part["x"]) for part in page["series"]) <= limit
            for part in page["series"]:
                got[part["item"]] += part["x"]
            cursor = page["next"]
            if cursor is None:
                break
    assert got[0] == list(range(len(KNOWN[0].series["loss"])))
    assert got[1] == list(range(len(KNOWN[1].series["loss"])))


def test_points_as_json_spell_what_json_cannot(known_server: ServerInfo) -> None:
    """Without base64, a value without a number is listed apart (JSON has no NaN)."""
    with httpx.Client(base_url=known_server.url) as http:
        page = http.post("/api/query/points", json={
            "workspace": WORKSPACE, "project": PROJECT,
            "series": [{"run": "run-6", "metric": "loss"}]}).json()
    (part,) = page["series"]
    assert part["special"] == [[NAN_AT, "NaN"]]
    expected = KNOWN[6].series["loss"]
    assert [v for i, v in enumerate(part["v"]) if i != NAN_AT] == \
        [v for i, v in enumerate(expected) if i != NAN_AT]
    assert len(part["t"]) == len(expected)


def test_buckets_hold_every_points_min_max_mean_last_count(client: QueryClient) -> None:
    run = KNOWN[3]
    values = run.series["loss"]
    n = 6
    frame = client.fetch_float_series_buckets(run.name, "loss", buckets_count=n)
    # Equal-width buckets over steps [0, len - 1], computed here from the logged values.
    width = len(values) / n
    groups: dict[int, list[tuple[int, float]]] = {}
    for step, value in enumerate(values):
        groups.setdefault(min(int(step / width), n - 1), []).append((step, value))
    assert list(frame.index) == [g[0][0] for g in groups.values()]
    for (first, _), (_, row) in zip([g[0] for g in groups.values()], frame.iterrows(),
                                    strict=True):
        members = groups[min(int(first / width), n - 1)]
        numbers = [v for _, v in members]
        assert row["min"] == min(numbers) and row["max"] == max(numbers)
        assert row["count"] == len(numbers) and row["last"] == numbers[-1]
        assert row["mean"] == pytest.approx(statistics.fmean(numbers), rel=1e-12)


def test_buckets_of_a_range(client: QueryClient) -> None:
    values = KNOWN[2].series["loss"]
    frame = client.fetch_float_series_buckets("run-2", "loss", buckets_count=100, start=10,
                                              end=19)
    assert list(frame.index) == list(range(10, 20))  # few points: one a bucket
    assert frame["min"].tolist() == values[10:20]


def test_rl_points_of_every_environment(client: QueryClient) -> None:
    frame = client.fetch_rl_env_float_series("run-0", "return")
    assert sorted(set(frame["environment"])) == [f"env-{e}" for e in range(ENVS)]
    assert len(frame) == ENVS * RL_STEPS
    for env in range(ENVS):
        mine = frame[frame["environment"] == f"env-{env}"].sort_values("rl_step")
        assert mine["rl_step"].tolist() == list(range(RL_STEPS))
        assert mine["value"].tolist() == [rl_value(env, s) for s in range(RL_STEPS)]
        assert (mine["scale"] == "EPISODE").all() and not mine["evaluation"].any()
    wide = frame.pivot_table(index="rl_step", columns="environment", values="value")
    assert wide.shape == (RL_STEPS, ENVS)


def test_rl_reduction_across_environments_per_rl_step(client: QueryClient) -> None:
    """mean, std (population), min, max and count across environments, at each rl_step."""
    frame = client.aggregate_rl_env_series("run-0", "return", buckets_count=RL_STEPS)
    assert list(frame.index) == list(range(RL_STEPS))
    for step in range(RL_STEPS):
        values = [rl_value(env, step) for env in range(ENVS)]
        row = frame.loc[step]
        assert row["min"] == min(values) and row["max"] == max(values)
        assert row["count"] == ENVS
        assert row["mean"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert row["std"] == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-12)


def test_local_database_answers_as_the_server_does(known_server: ServerInfo) -> None:
    """``QueryClient(db=...)`` on the server's database (its SQLite file, or its PostgreSQL
    URL), opened in this process: the same frames as over HTTP."""
    with QueryClient(WORKSPACE, PROJECT, url=known_server.url) as remote, \
            QueryClient(WORKSPACE, PROJECT, db=known_server.db_path) as local:
        kwargs: dict[str, Any] = {"attributes": ["config/lr", "config/optimizer"],
                                  "series_summaries": ["loss:min", "acc:last"]}
        a, b = remote.fetch_runs(**kwargs), local.fetch_runs(**kwargs)
        # status depends on the time of asking only for live runs; these are finished
        assert a.equals(b)
        assert remote.fetch_float_series(["run-4", "run-5"], ["loss", "acc"]).equals(
            local.fetch_float_series(["run-4", "run-5"], ["loss", "acc"]))
        assert remote.aggregate_rl_env_series("run-0", "return").equals(
            local.aggregate_rl_env_series("run-0", "return"))


NONFINITE = {  # run: (config x, values of m)
    "a": (math.nan, [1.0, math.inf]),
    "b": (1.5, [2.0]),
    "c": (math.inf, [-math.inf, 0.5]),
}


def test_non_finite_values_filter_order_page_and_arrive(any_live_server: ServerInfo) -> None:
    """±inf in a config or a series compares as infinity (NaN with nothing), sorts and pages
    (a cursor at an infinite key), and reaches the frame as a float, not a string."""
    url = any_live_server.url
    for name, (x, values) in NONFINITE.items():
        with metrana.session(workspace_name=WORKSPACE, project_name="nonfinite", run_name=name,
                             ingestion_url=url, config={"x": x}) as session:
            for value in values:
                session.log("m", value)
    with QueryClient(WORKSPACE, "nonfinite", url=url) as client:
        frame = client.fetch_runs(attributes=["config/x"],
                                  series_summaries=["m:max", "m:min", "m:mean"]).set_index("name")
        for name, (x, values) in NONFINITE.items():
            row = frame.loc[name]
            assert same([row["config/x"], row["m:max"], row["m:min"], row["m:mean"]],
                        [x, max(values), min(values), statistics.fmean(values)]), name
        assert set(client.fetch_runs(filter=AttrFilter("config/x") > 1)["name"]) == {"b", "c"}
        assert set(client.fetch_runs(filter=SeriesFilter("m").max() > 1e308)["name"]) == {"a"}
        assert list(client.fetch_runs(order_by=AttrOrderBy("config/x").desc())["name"]) == \
            ["c", "b", "a"]  # NaN: no key, last
    with httpx.Client(base_url=url) as http:
        for direction, expected in (("desc", ["a", "b", "c"]), ("asc", ["c", "b", "a"])):
            seen, cursor = [], None
            for _ in range(5):
                page = http.post("/api/query/runs", json={
                    "workspace": WORKSPACE, "project": "nonfinite", "limit": 1, "cursor": cursor,
                    "order_by": {"series": {"metric": "m"}, "fn": "max", "dir": direction}}).json()
                seen += [run["name"] for run in page["runs"]]
                cursor = page["next"]
                if cursor is None:
                    break
            assert seen == expected, direction


@pytest.mark.parametrize("page", [1, 7, 45])
def test_client_follows_point_pages(client: QueryClient, monkeypatch: pytest.MonkeyPatch,
                                    page: int) -> None:
    """Small pages (binary answers, cut inside and at the end of series) give the frames one
    large page gives."""
    import metrana.query._client as client_module

    whole = client.fetch_float_series(["run-0", "run-1"], ["loss", "acc"],
                                      include_timestamps=True)
    rl_whole = client.fetch_rl_env_float_series("run-0", "return")
    monkeypatch.setattr(client_module, "_POINTS_PAGE", page)
    assert client.fetch_float_series(["run-0", "run-1"], ["loss", "acc"],
                                     include_timestamps=True).equals(whole)
    assert client.fetch_rl_env_float_series("run-0", "return").equals(rl_whole)
    assert len(rl_whole) == ENVS * RL_STEPS and len(whole) == len(KNOWN[1].series["loss"]) + \
        len(KNOWN[0].series["loss"])

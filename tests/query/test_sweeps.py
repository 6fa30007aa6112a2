"""``metrana.query`` for sweeps, on both stores: ``aggregate_runs`` (groups of runs on aligned
buckets, with bands) and RL metrics in summaries and filters, every number checked against
numpy on the data written; filters typed as text; the RL messages and bucket counts."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest

from metrana.query import QueryClient, QueryRequestError, SeriesFilter, SeriesSummary
from metrana.server.errors import QueryError
from metrana.server.read_api import answer
from metrana.server.store import Store
from tests.support import UNDO_V5, UNDO_V6, UNDO_V7
from tests.sweep import SweepRun, bucket_means, write_sweep

WS, PROJECT = "lab", "sweep"


@pytest.fixture
def sweep(db_target: str) -> Iterator[tuple[QueryClient, list[SweepRun]]]:
    """A small sweep (2 lrs × 2 algos × 3 seeds, ragged lengths, 3 environments) and a client
    of it reading the database in process (the same route table as over HTTP)."""
    runs = write_sweep(db_target, WS, PROJECT, points=60, envs=3, episodes=25)
    with QueryClient(WS, PROJECT, db=db_target) as client:
        yield client, runs


@pytest.fixture(autouse=True)
def _quiet_numpy() -> Iterator[None]:
    """numpy warns for a bucket of one run (no std) or none: the reference is NaN there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def reference(runs: list[SweepRun], lo: int, hi: int, n: int, rl: bool = False) -> np.ndarray:
    """Per run and bucket, the mean of its points (an RL run: of all its environments')."""
    rows = []
    for run in runs:
        if rl:
            xs = np.concatenate([x for x, _ in run.returns.values()])
            vs = np.concatenate([v for _, v in run.returns.values()])
        else:
            xs, vs = run.steps, run.loss
        rows.append(bucket_means(xs, vs, lo, hi, n))
    return np.array(rows)


def test_aggregate_runs_groups_seeds_like_numpy(sweep: tuple[QueryClient, list[SweepRun]]
                                                ) -> None:
    client, runs = sweep
    n = 7
    frame = client.aggregate_runs("loss", group_by=["config/lr", "config/algo"], buckets_count=n,
                                  aggregations=("avg", "std", "stderr", "min", "max", "count",
                                                "lo", "hi"), band="ci95")
    lo = min(int(r.steps.min()) for r in runs)
    hi = max(int(r.steps.max()) for r in runs)
    width = (hi - lo + 1) / n
    groups = frame.groupby(["config/lr", "config/algo"])
    assert len(groups) == 4
    for (lr, algo), rows in groups:
        members = [r for r in runs if r.config["lr"] == lr and r.config["algo"] == algo]
        assert len(members) == 3
        means = reference(members, lo, hi, n)
        index = ((rows["x"].to_numpy() - lo) / width).astype(int)
        count = (~np.isnan(means)).sum(axis=0)
        assert rows["count"].tolist() == count[index].tolist()
        assert (count > 0).sum() == len(rows)  # a row per bucket holding points
        avg = np.nanmean(means, axis=0)[index]
        std = np.nanstd(means, axis=0, ddof=1)[index]
        np.testing.assert_allclose(rows["avg"], avg, rtol=1e-12)
        np.testing.assert_allclose(rows["std"], std, rtol=1e-9)
        np.testing.assert_allclose(rows["min"], np.nanmin(means, axis=0)[index], rtol=1e-12)
        np.testing.assert_allclose(rows["max"], np.nanmax(means, axis=0)[index], rtol=1e-12)
        stderr = std / np.sqrt(count[index])
        np.testing.assert_allclose(rows["stderr"], stderr, rtol=1e-9)
        np.testing.assert_allclose(rows["lo"], avg - 1.96 * stderr, rtol=1e-9)
        np.testing.assert_allclose(rows["hi"], avg + 1.96 * stderr, rtol=1e-9)
    # Buckets where only one seed is left (ragged runs) have no std: NaN, not 0.
    assert frame.loc[frame["count"] == 1, "std"].isna().all()
    assert (frame["count"] == 1).any()


def test_aggregate_runs_of_long_runs_reads_block_statistics(db_target: str) -> None:
    """Runs of a block of points per bucket or more are reduced from the blocks' statistics
    (never the points): with buckets on block boundaries the answer is still numpy's."""
    runs = write_sweep(db_target, WS, PROJECT, lrs=(1e-3,), algos=("ppo",), seeds=3,
                       points=4096, ragged=False)
    with QueryClient(WS, PROJECT, db=db_target) as client:
        frame = client.aggregate_runs("loss", buckets_count=4, aggregations=("avg", "std",
                                                                             "count"))
        zoomed = client.aggregate_runs("loss", buckets_count=2, start=1024, end=3071)
    means = reference(runs, 0, 4095, 4)
    assert frame["x"].tolist() == [0, 1024, 2048, 3072]
    np.testing.assert_allclose(frame["avg"], means.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(frame["std"], means.std(axis=0, ddof=1), rtol=1e-9)
    assert frame["count"].tolist() == [3] * 4
    np.testing.assert_allclose(zoomed["avg"], reference(runs, 1024, 3071, 2).mean(axis=0),
                               rtol=1e-12)


def test_aggregate_runs_spreads_blocks_over_the_buckets_they_span(db_target: str) -> None:
    """Past 32 points a bucket, 128-point blocks that straddle buckets are spread over them
    (by the steps each holds): every bucket keeps every run, each run's value within half a
    block of its exact mean (the loss falls by at most ``slope`` a step); a block across a
    gap in the steps is read from its points (exact: numpy's)."""
    runs = write_sweep(db_target, WS, PROJECT, lrs=(1e-3,), algos=("ppo",), seeds=3,
                       points=4096, ragged=False)
    store = Store(db_target)
    try:  # one more run: 300 points, then 300 more 100,000 steps later
        steps = np.r_[np.arange(300), 100_000 + np.arange(300)]
        store.create_run({"run": {"workspace": WS, "project": PROJECT, "run_name": "gap"},
                          "create_project_if_missing": True})
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": WS, "project": PROJECT, "run_name": "gap",
            "attributes": [{"path": "config/algo", "string_value": "gap"}],
            "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": 1, "points": [
                {"step": int(x), "timestamp": 1, "float_value": float(x % 7)} for x in steps]}],
            "close_run": {}}]})
    finally:
        store.close()
    with QueryClient(WS, PROJECT, db=db_target) as client:
        frame = client.aggregate_runs("loss", buckets_count=100, filter='config/algo == "ppo"',
                                      aggregations=("avg", "count"))
        # 600 points in 16 buckets: blocks, one of them across the gap (16 buckets)
        gap = client.aggregate_runs("loss", buckets_count=16, filter='config/algo == "gap"',
                                    aggregations=("avg", "count"))
    exact = reference(runs, 0, 4095, 100).mean(axis=0)
    assert frame["count"].tolist() == [3] * 100  # 41 steps a bucket: none left empty
    slope = 3.0 * np.max(np.abs(np.diff(np.exp(-np.arange(4096) * 3 / 4096))))
    assert np.abs(frame["avg"].to_numpy() - exact).max() <= 64 * slope + 0.05
    assert np.abs(frame["avg"].to_numpy() - exact).max() > 0  # blocks, not points
    want = bucket_means(steps, (steps % 7).astype(float), 0, int(steps[-1]), 16)
    np.testing.assert_allclose(gap["avg"], want[~np.isnan(want)], rtol=1e-12)


def test_aggregate_runs_of_an_rl_metric_takes_each_runs_environment_mean(
        sweep: tuple[QueryClient, list[SweepRun]]) -> None:
    client, runs = sweep
    n = 10
    frame = client.aggregate_runs("return", filter='config/algo == "ppo"', group_by="config/lr",
                                  buckets_count=n, aggregations=("avg", "min", "max", "count"),
                                  band="minmax")
    lo = min(int(x.min()) for r in runs for x, _ in r.returns.values())
    hi = max(int(x.max()) for r in runs for x, _ in r.returns.values())
    width = (hi - lo + 1) / n
    assert sorted(frame["config/lr"].unique()) == [1e-3, 1e-2]
    for lr, rows in frame.groupby("config/lr"):
        members = [r for r in runs if r.config["lr"] == lr and r.config["algo"] == "ppo"]
        means = reference(members, lo, hi, n, rl=True)
        index = ((rows["x"].to_numpy() - lo) / width).astype(int)
        np.testing.assert_allclose(rows["avg"], np.nanmean(means, axis=0)[index], rtol=1e-12)
        np.testing.assert_allclose(rows["min"], np.nanmin(means, axis=0)[index], rtol=1e-12)
        assert rows["count"].tolist() == (~np.isnan(means)).sum(axis=0)[index].tolist()


def test_aggregate_runs_refuses_what_it_cannot_do(sweep: tuple[QueryClient, list[SweepRun]]
                                                  ) -> None:
    client, _ = sweep
    with pytest.raises(QueryRequestError, match="unknown series 'nope'"):
        client.aggregate_runs("nope")
    with pytest.raises(QueryRequestError, match="unknown attribute 'config/none'"):
        client.aggregate_runs("loss", group_by=["config/none"])
    with pytest.raises(QueryRequestError, match="unknown band 'iqr'; one of std, stderr"):
        client.aggregate_runs("loss", band="iqr")
    with pytest.raises(QueryRequestError, match="12 runs match, more than max_runs=5"):
        client.aggregate_runs("loss", max_runs=5)
    with pytest.raises(ValueError, match="aggregations are some of avg, std"):
        client.aggregate_runs("loss", aggregations=("median",))


def test_aggregate_runs_sends_only_the_aggregations_asked(
        sweep: tuple[QueryClient, list[SweepRun]], db_target: str) -> None:
    """A chart of a line per run asks for the means alone: each group then carries its count
    and avg (the same numbers as in the full answer), nothing else; the client asks the
    server for what its frame shows."""
    client, _ = sweep
    store = Store(db_target)
    try:
        body = {"workspace": WS, "project": PROJECT, "series": {"metric": "loss"},
                "group_by": ["sys/name"], "n": 9, "band": "iqm95"}
        full, slim = (answer(store, "aggregate_runs", b)
                      for b in (body, {**body, "aggregations": ["avg"]}))
        assert isinstance(full, bytes) and isinstance(slim, bytes)  # JSON, not Binary
        with pytest.raises(QueryError, match="'aggregations' is a list, some of avg, std, "
                                             "stderr, min, max, count, lo, hi, mid"):
            answer(store, "aggregate_runs", {**body, "aggregations": ["median"]})
    finally:
        store.close()
    full, slim = json.loads(full), json.loads(slim)
    assert len(slim["groups"]) == len(full["groups"]) == 12
    assert slim["x"] == full["x"]
    for thin, whole in zip(slim["groups"], full["groups"], strict=True):
        assert set(thin) == {"key", "label", "runs", "count", "avg"}
        assert {"std", "lo", "hi", "mid"} <= set(whole)
        assert (thin["avg"], thin["count"]) == (whole["avg"], whole["count"])
    # "mid" without a band curve of its own is the mean (the client asks for avg with it)
    frame = client.aggregate_runs("loss", group_by="config/lr", aggregations=("mid",),
                                  buckets_count=9)
    means = client.aggregate_runs("loss", group_by="config/lr", aggregations=("avg",),
                                  buckets_count=9)
    assert list(frame.columns) == ["config/lr", "x", "mid"] and len(frame) > 9
    np.testing.assert_array_equal(frame["mid"], means["avg"])


def last10(run: SweepRun) -> float:
    return float(np.mean([values[-10:].mean() for _, values in run.returns.values()]))


def test_rl_metrics_are_summarised_filtered_and_ordered(
        sweep: tuple[QueryClient, list[SweepRun]]) -> None:
    """An RL metric's ``last`` is the mean over environments of each one's mean of its last
    10 episodes; min, max, mean and count are over every episode of every environment."""
    client, runs = sweep
    frame = client.fetch_runs(series_summaries=[
        SeriesSummary("return", fn, scale="EPISODE") for fn in ("last", "min", "max", "mean",
                                                                "count")]).set_index("name")
    for run in runs:
        values = np.concatenate([v for _, v in run.returns.values()])
        row = frame.loc[run.name]
        assert row["return:last"] == pytest.approx(last10(run), rel=1e-12)
        assert row["return:min"] == values.min()
        assert row["return:max"] == values.max()
        assert row["return:mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert row["return:count"] == values.size
    threshold = float(np.median([last10(r) for r in runs]))
    above = client.fetch_runs(filter=SeriesFilter("return").last() > threshold,
                              order_by=None, series_summaries=["return:last"])
    assert sorted(above["name"]) == sorted(r.name for r in runs if last10(r) > threshold)
    typed = client.fetch_runs(filter=f"return.last > {threshold!r}")
    assert sorted(typed["name"]) == sorted(above["name"])
    from metrana.query import SeriesOrderBy
    ordered = client.fetch_runs(order_by=SeriesOrderBy("return", "last").desc())
    assert list(ordered["name"]) == [r.name for r in sorted(runs, key=last10, reverse=True)]


def test_environment_step_last_is_each_environments_last_episodes(db_target: str) -> None:
    """On the ENVIRONMENT_STEP scale a run has a series per episode: ``last`` averages each
    environment's last 10 episodes' means, then the environments."""
    store = Store(db_target)
    rng = np.random.default_rng(3)
    episodes: dict[str, list[np.ndarray]] = {}
    try:
        store.create_run({"run": {"workspace": WS, "project": PROJECT, "run_name": "steps"},
                          "create_project_if_missing": True})
        series = []
        for env in ("a", "b"):
            for episode in range(13 if env == "a" else 4):
                values = rng.normal(episode, 1, 5 + episode)
                episodes.setdefault(env, []).append(values)
                series.append({"metric_name": "reward", "scale": "ENVIRONMENT_STEP",
                               "ordering": 1, "environment_id": env, "episode": episode,
                               "points": [{"major_step": episode * 10, "minor_step": k,
                                           "timestamp": 1, "float_value": float(v)}
                                          for k, v in enumerate(values)]})
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": WS, "project": PROJECT, "run_name": "steps", "rl_series": series}]})
    finally:
        store.close()
    expected = np.mean([np.mean([e.mean() for e in eps[-10:]]) for eps in episodes.values()])
    with QueryClient(WS, PROJECT, db=db_target) as client:
        frame = client.fetch_runs(series_summaries=[SeriesSummary("reward", "last")])
    assert frame["reward:last"].iloc[0] == pytest.approx(expected, rel=1e-12)


def test_a_filter_typed_as_text_is_the_same_filter(sweep: tuple[QueryClient, list[SweepRun]]
                                                   ) -> None:
    client, runs = sweep
    frame = client.fetch_runs(filter='config/lr >= 1e-2 and (config/algo == "ppo" or '
                                     'config/seed in [0]) and loss.last < 100')
    assert sorted(frame["name"]) == sorted(
        r.name for r in runs if r.config["lr"] >= 1e-2
        and (r.config["algo"] == "ppo" or r.config["seed"] == 0))
    for text, message in (("config/lr >=", "expected a value .* at column 13"),
                          ("config/lr > 1 config", "expected 'and', 'or' or the end at column 15"),
                          ("config/nope > 1", "unknown attribute 'config/nope'"),
                          ('config/algo > 1', "holds string values; it cannot be compared")):
        with pytest.raises(QueryRequestError, match=message):
            client.fetch_runs(filter=text)


def test_rl_messages_and_band_buckets(sweep: tuple[QueryClient, list[SweepRun]],
                                      db_target: str) -> None:
    client, runs = sweep
    with pytest.raises(QueryRequestError, match="'return' is an RL metric .* "
                                                "fetch_rl_env_float_series"):
        client.fetch_float_series(runs[0].name, "return")
    # 876 episodes in 4 environments: about as many rows as buckets asked for, not 7.
    store = Store(db_target)
    try:
        store.create_run({"run": {"workspace": WS, "project": PROJECT, "run_name": "long"},
                          "create_project_if_missing": True})
        store.update_runs({"session_id": 1, "run_updates": [{
            "workspace": WS, "project": PROJECT, "run_name": "long", "rl_series": [
                {"metric_name": "ep", "scale": "EPISODE", "ordering": 1,
                 "environment_id": f"e{env}",
                 "points": [{"major_step": k * 512, "minor_step": k, "timestamp": 1,
                             "float_value": float(k + env)} for k in range(876)]}
                for env in range(4)]}]})
    finally:
        store.close()
    for n in (20, 100):
        band = client.aggregate_rl_env_series("long", "ep", buckets_count=n)
        assert n - 1 <= len(band) <= n
        assert band["count"].sum() == 4 * 876


def test_a_version_3_database_gets_its_rl_tails(db_target: str) -> None:
    """Opening a version-3 database computes every RL series' last points (schema 4)."""
    runs = write_sweep(db_target, WS, PROJECT, lrs=(1e-3,), algos=("ppo",), seeds=2, points=5,
                       envs=2, episodes=15)
    statements = [*UNDO_V7, *UNDO_V6, *UNDO_V5, "ALTER TABLE series DROP COLUMN tail_points",
                  "ALTER TABLE series DROP COLUMN tail_mean",
                  "UPDATE meta SET value = '3' WHERE key = 'schema_version'"]
    if db_target.startswith("postgresql"):
        import psycopg
        with psycopg.connect(db_target) as conn:
            for sql in statements:
                conn.execute(sql)
    else:
        with sqlite3.connect(db_target) as conn:
            for sql in statements:
                conn.execute(sql)
    with QueryClient(WS, PROJECT, db=db_target) as client:
        frame = client.fetch_runs(series_summaries=["return:last"]).set_index("name")
    assert isinstance(frame, pd.DataFrame)
    for run in runs:
        assert frame.loc[run.name, "return:last"] == pytest.approx(last10(run), rel=1e-12)

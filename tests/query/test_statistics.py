"""``metrana.query``'s statistics on both stores, over real servers: every number the server
computes (IQM, median, mean and optimality gap with their stratified bootstrap intervals,
performance profiles, probabilities of improvement) equals what ``rliable`` gives when called
directly on the same scores, computed here in numpy from the data written, with the same
seed. And what a user gets wrong is told so."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from rliable import library as rly, metrics

from metrana.query import QueryClient, QueryRequestError
from metrana.server import ServerInfo
from tests.suite import SuiteRun, score_matrices, write_suite

WS = "stats"
REFERENCES = {"breakout": (0.0, 300.0), "pong": (-21.0, 21.0)}
_WRITTEN: dict[str, list[SuiteRun]] = {}
_PROJECTS = itertools.count()


@pytest.fixture
def suite(any_live_server: ServerInfo) -> Iterator[tuple[QueryClient, list[SuiteRun]]]:
    """The suite, written once into each live server's database, and a client of it."""
    if any_live_server.url not in _WRITTEN:
        _WRITTEN[any_live_server.url] = write_suite(any_live_server.db_path, WS, "suite")
    with QueryClient(WS, "suite", url=any_live_server.url) as client:
        yield client, _WRITTEN[any_live_server.url]


def _aggregate(x: np.ndarray) -> np.ndarray:
    return np.array([metrics.aggregate_iqm(x), metrics.aggregate_median(x),
                     metrics.aggregate_mean(x), metrics.aggregate_optimality_gap(x)])


def _rliable_intervals(scores: dict[str, np.ndarray], seed: int, reps: int
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    np.random.seed(seed)
    found: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] = rly.get_interval_estimates(
        scores, _aggregate, reps=reps)
    return found


def test_aggregates_equal_rliable_per_task_normalised(suite: tuple[QueryClient, list[SuiteRun]]
                                                      ) -> None:
    client, runs = suite
    frame = client.compare_groups(
        "eval/return", group_by="config/algo", task_key="config/task", normalize=REFERENCES,
        aggregates=("iqm", "median", "mean", "optimality_gap"), reps=400, seed=11)
    scores = score_matrices(runs, normalize=REFERENCES)
    points, intervals = _rliable_intervals(scores, 11, 400)
    assert list(dict.fromkeys(frame["group"])) == list(scores)
    for label, matrix in scores.items():
        mine = frame[frame["group"] == label]
        assert list(mine["aggregate"]) == ["iqm", "median", "mean", "optimality_gap"]
        assert (mine["runs"] == matrix.size).all()
        np.testing.assert_allclose(mine["value"], points[label], rtol=1e-12)
        np.testing.assert_allclose(mine["ci_low"], intervals[label][0], rtol=1e-12)
        np.testing.assert_allclose(mine["ci_high"], intervals[label][1], rtol=1e-12)
        assert (mine["ci_low"] <= mine["ci_high"]).all()


def test_rl_last10_scores_and_the_seed(suite: tuple[QueryClient, list[SuiteRun]]) -> None:
    """An RL metric's last-10-episode scores, one task: rliable's numbers for this seed; the
    same seed again gives the same intervals, another seed others."""
    client, runs = suite
    frame = client.compare_groups("return", group_by=["config/algo"], reps=300, seed=5,
                                  aggregates=("iqm", "median", "mean", "optimality_gap"))
    scores = score_matrices(runs, rl=True, by_task=False)
    points, intervals = _rliable_intervals(scores, 5, 300)
    for label in scores:
        mine = frame[frame["group"] == label]
        np.testing.assert_allclose(mine["value"], points[label], rtol=1e-12)
        np.testing.assert_allclose(mine[["ci_low", "ci_high"]].to_numpy().T, intervals[label],
                                   rtol=1e-12)
    again = client.compare_groups("return", group_by=["config/algo"], reps=300, seed=5,
                                  aggregates=("iqm", "median", "mean", "optimality_gap"))
    assert again.equals(frame)
    other = client.compare_groups("return", group_by=["config/algo"], reps=300, seed=6,
                                  aggregates=("iqm", "median", "mean", "optimality_gap"))
    assert not np.allclose(other["ci_low"], frame["ci_low"])


@pytest.mark.parametrize("summary", ["last", "min", "max", "mean"])
def test_other_summaries_score_like_numpy(suite: tuple[QueryClient, list[SuiteRun]],
                                          summary: str) -> None:
    client, runs = suite
    frame = client.compare_groups("eval/return", summary=summary, group_by="config/algo",
                                  task_key="config/task", aggregates=("mean", "median"),
                                  reps=50)
    scores = score_matrices(runs, summary)
    for label, matrix in scores.items():
        mine = frame[frame["group"] == label].set_index("aggregate")["value"]
        assert mine["mean"] == pytest.approx(metrics.aggregate_mean(matrix), rel=1e-12)
        assert mine["median"] == pytest.approx(metrics.aggregate_median(matrix), rel=1e-12)


def test_performance_profile_equals_rliable(suite: tuple[QueryClient, list[SuiteRun]]) -> None:
    client, runs = suite
    frame = client.performance_profile("eval/return", group_by="config/algo",
                                       task_key="config/task", normalize=REFERENCES,
                                       points=21, reps=300, seed=2)
    scores = score_matrices(runs, normalize=REFERENCES)
    every = np.concatenate([m.ravel() for m in scores.values()])
    thresholds = np.linspace(every.min(), every.max(), 21)
    np.random.seed(2)
    profiles, bands = rly.create_performance_profile(scores, thresholds, reps=300)
    for label in scores:
        mine = frame[frame["group"] == label]
        np.testing.assert_allclose(mine["threshold"], thresholds, rtol=1e-12)
        np.testing.assert_allclose(mine["fraction"], profiles[label], rtol=1e-12)
        np.testing.assert_allclose(mine["ci_low"], bands[label][0], rtol=1e-12)
        np.testing.assert_allclose(mine["ci_high"], bands[label][1], rtol=1e-12)
    given = client.performance_profile("eval/return", group_by="config/algo",
                                       task_key="config/task", normalize=REFERENCES,
                                       thresholds=[0.0, 0.5, 1.0], reps=20)
    assert sorted(set(given["threshold"])) == [0.0, 0.5, 1.0]


def test_probability_of_improvement_equals_rliable(suite: tuple[QueryClient, list[SuiteRun]]
                                                   ) -> None:
    """One pair named by value (groups of 4 and 5 seeds: resampled independently), and
    every ordered pair."""
    client, runs = suite
    scores = score_matrices(runs, normalize=REFERENCES)
    one = client.probability_of_improvement(
        "eval/return", "ppo", "dqn", group_by="config/algo", task_key="config/task",
        normalize=REFERENCES, reps=300, seed=4)
    np.random.seed(4)
    point, interval = rly.get_interval_estimates(
        {"p": [scores["config/algo=ppo"], scores["config/algo=dqn"]]},
        metrics.probability_of_improvement, reps=300)
    assert list(one["x"]) == ["config/algo=ppo"] and list(one["y"]) == ["config/algo=dqn"]
    assert one["value"][0] == pytest.approx(point["p"], rel=1e-12)
    assert [one["ci_low"][0], one["ci_high"][0]] == pytest.approx(
        list(interval["p"].ravel()), rel=1e-12)
    assert 0 < one["ci_low"][0] < one["value"][0] < one["ci_high"][0] < 1

    every = client.probability_of_improvement(
        "eval/return", group_by="config/algo", task_key="config/task", normalize=REFERENCES,
        reps=100, seed=9)
    pairs = [(x, y) for x in scores for y in scores if x != y]
    assert list(zip(every["x"], every["y"], strict=True)) == pairs
    np.random.seed(9)
    points, intervals = rly.get_interval_estimates(
        {f"{x}>{y}": [scores[x], scores[y]] for x, y in pairs},
        metrics.probability_of_improvement, reps=100)
    for row in every.itertuples():
        key = f"{row.x}>{row.y}"
        assert row.value == pytest.approx(points[key], rel=1e-12)
        assert [row.ci_low, row.ci_high] == pytest.approx(list(intervals[key].ravel()),
                                                          rel=1e-12)


def test_what_cannot_be_compared_is_told(suite: tuple[QueryClient, list[SuiteRun]]) -> None:
    client, _ = suite
    with pytest.raises(QueryRequestError, match=r"config/algo=dqn has \{.*\} runs per task"):
        client.compare_groups("eval/return", group_by="config/algo", task_key="config/task",
                              filter="config/seed != 0 or config/task == 'pong'")
    with pytest.raises(QueryRequestError, match="normalize has no \\[min, max\\] for task 'pong'"):
        client.compare_groups("eval/return", group_by="config/algo", task_key="config/task",
                              normalize={"breakout": (0, 300)})
    with pytest.raises(QueryRequestError, match="no group 'config/algo=a2c'"):
        client.probability_of_improvement("eval/return", "a2c", "ppo", group_by="config/algo")
    with pytest.raises(QueryRequestError, match="aggregates are some of iqm"):
        client.compare_groups("eval/return", group_by="config/algo", aggregates=("p90",))
    with pytest.raises(QueryRequestError, match="unknown summary 'final'"):
        client.compare_groups("eval/return", summary="final")
    with pytest.raises(QueryRequestError, match="unknown series 'eval/retrun'"):
        client.compare_groups("eval/retrun")
    with pytest.raises(QueryRequestError, match="is the task key; group by other keys"):
        client.compare_groups("eval/return", group_by="config/task", task_key="config/task")
    with pytest.raises(QueryRequestError, match="28 groups make 756 pairs, more than 400"):
        client.probability_of_improvement("eval/return", group_by="sys/name")
    with pytest.raises(QueryRequestError, match="'reps' must be an integer from 1 to 50000"):
        client.compare_groups("eval/return", reps=0)


def test_without_rliable_the_message_says_what_to_install(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server (here the same route table, in process) lacks the stats extra."""
    db = f"{tmp_path}/stats.sqlite3"
    write_suite(db, WS, "small", algos=(("dqn", 2),), tasks=("pong",), rl=False)
    monkeypatch.setitem(sys.modules, "rliable", None)
    monkeypatch.delitem(sys.modules, "rliable.metrics", raising=False)
    with QueryClient(WS, "small", db=db) as client, pytest.raises(
            QueryRequestError, match=r"pip install 'metrana\[stats\]'"):
        client.compare_groups("eval/return")


def test_rliable_is_imported_only_when_asked() -> None:
    """Neither ``import metrana`` nor the server's start loads rliable or scipy."""
    code = ("import sys, metrana, metrana.query, metrana.server.app, metrana.server.read_api; "
            "loaded = [m for m in ('rliable', 'scipy', 'arch') if m in sys.modules]; "
            "print(loaded); sys.exit(1 if loaded else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_last10_of_a_standard_series_spans_chunks_and_sessions(db_target: str) -> None:
    """A standard series' last 10 points, when they lie in two chunks of one session (4,096 +
    3 points) and a second session's chunk, one without a number: the mean of the others."""
    from metrana.server.store import Store

    values = {run: np.random.default_rng(k).normal(k, 1, 4099) for k, run in enumerate("ab")}
    values["a"][-2] = np.nan
    later = {"a": [7.0, 8.0, 9.0], "b": [1.0, 2.0, 3.0]}
    store = Store(db_target)
    try:
        for run in "ab":
            store.create_run({"run": {"workspace": WS, "project": "tails", "run_name": run},
                              "create_project_if_missing": True})
            for session, points in ((1, values[run]), (2, np.array(later[run]))):
                store.update_runs({"session_id": session, "run_updates": [{
                    "workspace": WS, "project": "tails", "run_name": run,
                    "series": [{"metric_name": "score", "scale": "ML_STEP", "ordering": 1,
                                "points": [{"step": k, "timestamp": k + 1,
                                            **({} if v != v else {"float_value": float(v)})}
                                           for k, v in enumerate(points)]}]}]})
    finally:
        store.close()
    with QueryClient(WS, "tails", db=db_target) as client:
        frame = client.compare_groups("score", group_by="sys/name", aggregates=("mean",),
                                      reps=10)
    for run in "ab":
        tail = np.concatenate([values[run][-7:], later[run]])
        expected = np.nanmean(tail)
        assert frame.set_index("group")["value"][f"sys/name={run}"] == pytest.approx(expected)


def test_iqm_band_on_aligned_buckets_equals_rliable(any_live_server: ServerInfo) -> None:
    """The ``iqm95`` band of grouped curves: per bucket, the IQM across the group's runs of
    their bucket means, and its stratified bootstrap interval: rliable's on scores runs × 1 ×
    buckets (each bucket resampled on its own), 2,000 repetitions, ``np.random.seed(0)``,
    groups in order. Asked over HTTP, whose answer lists each group's runs in row order."""
    import httpx

    from tests.sweep import bucket_means, write_sweep

    project = f"curves-{next(_PROJECTS)}"
    runs = {r.name: r for r in write_sweep(any_live_server.db_path, WS, project, seeds=5,
                                           points=40, ragged=False)}
    n = 5
    answer = httpx.post(f"{any_live_server.url}/api/query/aggregate_runs", json={
        "workspace": WS, "project": project, "series": {"metric": "loss"},
        "group_by": ["config/lr"], "band": "iqm95", "n": n}, timeout=60).json()
    lo, hi = answer["lo"], answer["hi"]
    scores = {g["label"]: np.array([bucket_means(runs[r].steps, runs[r].loss, lo, hi, n)
                                    for r in g["runs"]])[:, None, :] for g in answer["groups"]}
    np.random.seed(0)
    points, intervals = rly.get_interval_estimates(scores, lambda s: np.array(
        [metrics.aggregate_iqm(s[..., j]) for j in range(n)]), reps=2000)
    assert [g["label"] for g in answer["groups"]] == ["config/lr=0.001", "config/lr=0.01"]
    for group in answer["groups"]:
        assert len(group["runs"]) == 10
        np.testing.assert_allclose(group["mid"], points[group["label"]], rtol=1e-9)
        np.testing.assert_allclose(group["lo"], intervals[group["label"]][0], rtol=1e-9)
        np.testing.assert_allclose(group["hi"], intervals[group["label"]][1], rtol=1e-9)
    with QueryClient(WS, project, url=any_live_server.url) as client:
        frame = client.aggregate_runs("loss", group_by="config/lr", band="iqm95",
                                      buckets_count=n, aggregations=("mid", "lo", "hi", "avg"))
    first = answer["groups"][0]
    mine = frame[frame["config/lr"] == 0.001]
    np.testing.assert_allclose(mine["mid"], first["mid"])
    np.testing.assert_allclose(mine[["lo", "hi"]].to_numpy().T, [first["lo"], first["hi"]])
    assert not np.allclose(mine["mid"], mine["avg"])  # the IQM, not the mean


def test_a_filter_matching_nothing_gives_empty_frames(suite: tuple[QueryClient, list[SuiteRun]]
                                                      ) -> None:
    client, _ = suite
    empty = "config/seed > 100"
    assert client.compare_groups("eval/return", group_by="config/algo", filter=empty).empty
    assert client.performance_profile("eval/return", group_by="config/algo", filter=empty).empty
    assert list(client.performance_profile("eval/return", filter=empty).columns) == [
        "group", "threshold", "fraction", "ci_low", "ci_high"]
    assert client.probability_of_improvement("eval/return", group_by="config/algo",
                                             filter=empty).empty

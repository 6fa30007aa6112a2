"""End to end against the real server over loopback: what users log is what gets stored."""

from __future__ import annotations

import math
import threading
import time
import uuid
import warnings
from typing import Any

import httpx
import numpy as np
import pytest

import metrana
from metrana.server import ServerInfo
from tests.helpers import read_points


def run_name() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def open_run(info: ServerInfo, **kwargs: object) -> metrana.Session:
    options = {"workspace_name": "ws", "project_name": "proj", "run_name": run_name(),
               "ingestion_url": info.url, "close_strategy": "CompleteAll", **kwargs}
    return metrana.session(**options)


def values(points: list[dict[str, Any]]) -> list[Any]:
    return [p["value"] for p in points]


def test_module_api_logs_and_closes(live_server: ServerInfo) -> None:
    """init / log / log(dict) / close: every value stored in order with steps from 0."""
    name = run_name()
    rule = metrana.AggregationRule(source_scale="EPISODE", output_scale="EPISODE",
                                   fns=["AGGREGATION_FN_MEAN"], aggregate_over_labels=["env"])
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, close_strategy="CompleteAll",
                 config={"lr": 0.1, "arch": {"layers": [64, 64]}}, experiment_name="exp",
                 aggregation_rules=[rule])
    for i in range(100):
        metrana.log("loss", 1.0 / (i + 1))
        metrana.log({"acc": i / 100, "lr": np.float32(0.5)})
    result = metrana.close()
    assert result.sent == result.logged == 300
    stored = read_points(live_server, name)
    assert values(stored["loss"]) == [1.0 / (i + 1) for i in range(100)]
    assert [p["step"] for p in stored["acc"]] == list(range(100))
    assert values(stored["lr"]) == [0.5] * 100
    detail = httpx.get(f"{live_server.url}/api/runs/ws/proj/{name}").json()
    assert detail["experiment"] == "exp"
    assert detail["aggregation_rules"] == [{"source_scale": "EPISODE", "output_scale": "EPISODE",
                                            "fns": ["AGGREGATION_FN_MEAN"],
                                            "aggregate_over_labels": ["env"]}]
    assert detail["attributes"] == {
        "config/lr": {"kind": "float", "value": 0.1},
        "config/arch/layers/0": {"kind": "int", "value": 64},
        "config/arch/layers/1": {"kind": "int", "value": 64},
    }


def test_values_of_every_supported_type_arrive(live_server: ServerInfo) -> None:
    """int, bool, numpy scalars, NaN and ±inf are legitimate values and stored as such."""
    with open_run(live_server) as run:
        for value in (3, True, np.int64(4), np.float64(2.5), math.nan, math.inf, -math.inf, 0.0):
            run.log("v", value)
    stored = values(read_points(live_server, run.run_name)["v"])
    assert stored == [3.0, 1.0, 4.0, 2.5, "NaN", "Infinity", "-Infinity", 0.0]


@pytest.mark.parametrize("bad", ["0.5", None, {"a": 1}, b"1", [[1.0]], ["x"], np.zeros((2, 2)),
                                 np.array(["a"])])
def test_wrong_value_types_raise_type_error_and_lose_nothing(live_server: ServerInfo, bad: object
                                                              ) -> None:
    """A string, None or container is a TypeError at the call site; other points still arrive."""
    with open_run(live_server) as run:
        run.log("ok", 1.0)
        with pytest.raises(TypeError, match="'loss'"):
            run.log("loss", bad)
        with pytest.raises(TypeError):
            run.log({"good": 1.0, "loss": bad})
        run.log("ok", 2.0)
    stored = read_points(live_server, run.run_name)
    assert list(stored) == ["ok"] and values(stored["ok"]) == [1.0, 2.0]


@pytest.mark.parametrize("name", ["", "train loss", " loss", "loss\t"])
def test_bad_metric_names_suggest_a_fix(live_server: ServerInfo, name: str) -> None:
    """Empty names and names with whitespace raise MetranaMetricNameError with a suggestion."""
    with open_run(live_server) as run:
        with pytest.raises(metrana.MetranaMetricNameError) as info:
            run.log(name, 1.0)
    if name.strip():
        assert "instead" in str(info.value)


def test_labels_must_map_str_to_str(live_server: ServerInfo) -> None:
    """Labels of other types are a TypeError telling how to convert."""
    with open_run(live_server) as run:
        with pytest.raises(TypeError, match="str"):
            run.log("loss", 1.0, labels={"seed": 3})  # type: ignore[dict-item]
        with pytest.raises(TypeError):
            run.log("loss", 1.0, labels=["a"])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="ML_STEP"):
            run.log("loss", 1.0, scale="EPOCH")


def test_labels_scales_and_evaluation_make_separate_series(live_server: ServerInfo) -> None:
    """(name, scale, labels) is a series; evaluation=True adds evaluation=true."""
    with open_run(live_server) as run:
        run.log("loss", 1.0)
        run.log("loss", 2.0, evaluation=True)
        run.log("loss", 3.0, labels={"split": "val"})
        run.log("loss", 4.0, labels={"evaluation": "false"}, evaluation=True)
        run.log("loss", 5.0, scale=metrana.StandardMetricScale.EPISODE)
        run.log("loss", 6.0, scale="EPISODE")
    stored = read_points(live_server, run.run_name)
    assert values(stored["loss"]) == [1.0]
    assert values(stored["loss[EPISODE]"]) == [5.0, 6.0]
    assert values(stored["loss{evaluation=true}"]) == [2.0]
    assert values(stored["loss{split=val}"]) == [3.0]
    assert values(stored["loss{evaluation=false}"]) == [4.0]


def test_manual_steps_and_timestamps_are_kept(live_server: ServerInfo) -> None:
    """Manual steps (strictly increasing) and Unix-ns timestamps arrive as given."""
    with open_run(live_server) as run:
        for step in (0, 5, 10):
            run.log("loss", float(step), step=step, timestamp=1_795_686_541_000_000_000 + step)
        with pytest.raises(TypeError, match="nanoseconds"):
            run.log("loss", 1.0, step=11, timestamp=time.time())
        with pytest.raises(ValueError, match=">= 0"):
            run.log("loss", 1.0, step=-1)
    points = read_points(live_server, run.run_name)["loss"]
    assert [p["step"] for p in points] == [0, 5, 10]
    assert [p["timestamp_ns"] for p in points] == [1_795_686_541_000_000_000 + s for s in (0, 5, 10)]


def test_log_before_init_and_after_close() -> None:
    """log() before init() and after close() raise errors that say what to do."""
    with pytest.raises(metrana.MetranaNotInitializedError, match="init"):
        metrana.log("loss", 1.0)
    with pytest.raises(metrana.MetranaNotInitializedError):
        metrana.log_rl_episode("r", 1.0, rl_step=0)


def test_after_close_and_init_twice(live_server: ServerInfo) -> None:
    """init() twice warns once and keeps the first run; log() after close() raises."""
    first = metrana.init(workspace_name="ws", project_name="proj", run_name=run_name(),
                         ingestion_url=live_server.url)
    with pytest.warns(UserWarning, match="keeping it"):
        second = metrana.init(workspace_name="ws", project_name="proj", run_name=run_name(),
                              ingestion_url=live_server.url)
    assert second is first
    metrana.close()
    with pytest.raises(metrana.MetranaLoggerClosedError, match="closed"):
        metrana.log("loss", 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrana.init(workspace_name="ws", project_name="proj", run_name=run_name(),
                     ingestion_url=live_server.url)  # a new run after close is fine
    metrana.close()


def test_resume_strategies(live_server: ServerInfo) -> None:
    """Allow resumes an existing run; Never refuses it from init()."""
    name = run_name()
    with open_run(live_server, run_name=name) as run:
        run.log("loss", 1.0)
    with open_run(live_server, run_name=name, resume_strategy="allow") as again:
        assert again.resumed
    with pytest.raises(metrana.MetranaRunAlreadyExistsError, match="resume_strategy"):
        open_run(live_server, run_name=name, resume_strategy="Never")


def test_eight_threads_every_point_once_and_in_order(live_server: ServerInfo) -> None:
    """8 threads × 10,000 points: all arrive once, each series in the order it was logged."""
    with open_run(live_server) as run:
        def worker(t: int) -> None:
            for i in range(10_000):
                run.log(f"thread_{t}", float(i))
                run.log("shared", float(t * 10_000 + i))

        threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert run.get_metrics().sent == 160_000
    stored = read_points(live_server, run.run_name)
    for t in range(8):
        points = stored[f"thread_{t}"]
        assert [p["step"] for p in points] == list(range(10_000))
        assert values(points) == [float(i) for i in range(10_000)]
    shared = stored["shared"]
    assert [p["step"] for p in shared] == list(range(80_000))
    assert sorted(values(shared)) == [float(v) for v in range(80_000)]
    for t in range(8):  # each thread's values appear in its own order along the steps
        mine = [v for v in values(shared) if t * 10_000 <= v < (t + 1) * 10_000]
        assert mine == sorted(mine)


def test_session_block_closes_on_exit_and_on_exception(live_server: ServerInfo) -> None:
    """The with-block closes the run; an exception in the body propagates after delivery."""
    with pytest.raises(ZeroDivisionError):
        with open_run(live_server) as run:
            run.log("loss", 1.0)
            1 / 0  # noqa: B018
    assert values(read_points(live_server, run.run_name)["loss"]) == [1.0]
    with pytest.raises(metrana.MetranaLoggerClosedError):
        run.log("loss", 2.0)


@pytest.mark.slow
def test_million_points_complete_all_every_point_exactly_once(live_server: ServerInfo) -> None:
    """1,000,000 points over 16 metrics with CompleteAll: all stored, none twice."""
    with open_run(live_server) as run:
        log = run.log
        for i in range(1_000_000):
            log(f"metric_{i % 16}", float(i))
    metrics = run.get_metrics()
    assert metrics.sent == metrics.logged == 1_000_000
    from metrana.server import Store

    store = Store(live_server.db_path)
    try:
        detail = store.get_run("ws", "proj", run.run_name)
        assert sum(s["point_count"] for s in detail["series"]) == 1_000_000
        for series in detail["series"]:
            m = int(series["metric_name"].removeprefix("metric_"))
            points = store.get_points(series["id"])
            assert [p["step"] for p in points] == list(range(62_500))
            assert [p["value"] for p in points] == [float(i * 16 + m) for i in range(62_500)]
    finally:
        store.close()


def test_gzip_bodies_reach_the_real_server(live_server: ServerInfo) -> None:
    """compress=True sends gzip bodies; our server stores them like plain ones."""
    with open_run(live_server, compress=True) as run:
        for i in range(1000):
            run.log("loss", float(i))
    assert [p["step"] for p in read_points(live_server, run.run_name)["loss"]] == list(range(1000))


def test_module_log_before_init_after_close_and_across_runs(live_server: ServerInfo) -> None:
    """metrana.log follows the global run: not initialized, then the run, then closed, then
    the next run; `from metrana import log` behaves the same."""
    from metrana import log as imported_log

    for call in (metrana.log, imported_log):
        with pytest.raises(metrana.MetranaNotInitializedError):
            call("loss", 1.0)
    names = [run_name(), run_name()]
    for name in names:
        metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                     ingestion_url=live_server.url, close_strategy="CompleteAll")
        metrana.log("loss", 1.0)
        imported_log("loss", 2.0)
        metrana.close()
        for call in (metrana.log, imported_log):
            with pytest.raises(metrana.MetranaLoggerClosedError):
                call("loss", 3.0)
    for name in names:
        assert values(read_points(live_server, name)["loss"]) == [1.0, 2.0]

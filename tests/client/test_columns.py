"""The column path (a standard series numbered automatically) and the deque path meet: what a
user sees is one series in the order they logged it, whichever way each point travelled."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import pytest

import metrana
from metrana.server import ServerInfo
from tests.helpers import read_points

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def open_run(info: ServerInfo, **kwargs: object) -> tuple[str, metrana.Session]:
    name = f"run-{uuid.uuid4().hex[:8]}"
    return name, metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                                 ingestion_url=info.url, **kwargs)


def steps_values(points: list[dict[str, Any]]) -> list[tuple[int, float]]:
    return [(p["step"], p["value"]) for p in points]


def test_scalars_dicts_vectors_and_timestamps_of_one_series_keep_their_order(
        live_server: ServerInfo) -> None:
    """log(name, v), log({name: v}), a timestamp= and a vectorized log(name, [..]) of the same
    series, interleaved: stored with steps 0.. in exactly the order logged."""
    name, run = open_run(live_server)
    with run:
        expected = []
        for i in range(0, 4_000, 4):
            run.log("loss", float(i))
            run.log({"loss": float(i + 1), "acc": 0.5})
            run.log("loss", float(i + 2), timestamp=1_800_000_000_000_000_000 + i)
            if i == 2_000:
                run.log("loss", [float(i + 3), float(i + 3.5)])
                expected += [float(i), float(i + 1), float(i + 2), float(i + 3), float(i + 3.5)]
            else:
                run.log("loss", float(i + 3))
                expected += [float(i + j) for j in range(4)]
        run.flush()
    stored = read_points(live_server, name)
    assert steps_values(stored["loss"]) == list(enumerate(expected))
    assert [p["step"] for p in stored["acc"]] == list(range(1_000))
    stamped = [p for p in stored["loss"] if p["value"] % 4 == 2]
    assert len(stamped) == 1_000


def test_a_manual_step_after_automatic_ones_is_refused_and_loses_nothing_else(
        live_server: ServerInfo) -> None:
    """Automatic steps, then step=: the manual point is refused with an error naming both
    kinds; every automatic point before and after it is stored in order."""
    name, run = open_run(live_server, error_strategy="RaiseOnClose")
    with pytest.raises(ExceptionGroup) as caught:
        with run:
            for i in range(100):
                run.log("loss", float(i))
            run.log("loss", 100.0, step=500)
            for i in range(101, 200):
                run.log("loss", float(i))
    assert "got manual step 500 in a series with automatic steps" in str(caught.value.exceptions[0])
    stored = read_points(live_server, name)
    assert steps_values(stored["loss"]) == [(s, float(v)) for s, v in
                                             enumerate([*range(100), *range(101, 200)])]


def test_points_logged_during_close_are_refused_not_lost(live_server: ServerInfo) -> None:
    """After close() a scalar on a known series raises (it has a column, the check is the
    same); the counters account for every point logged before."""
    _, run = open_run(live_server)
    with run:
        for i in range(1_000):
            run.log("loss", float(i))
    with pytest.raises(metrana.MetranaLoggerClosedError):
        run.log("loss", 1.0)
    final = run.get_metrics()
    assert final.sent == final.logged == 1_000

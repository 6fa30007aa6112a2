"""Histograms and point clouds, end to end: what ``log_histogram``/``log_scatter`` sent is
what ``metrana.query`` reads back, on both stores, over real loopback servers; also through
the spool and ``metrana.sync``, and a step sent again overwrites it."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

import metrana
from metrana.query import QueryClient, QueryRequestError
from metrana.server import ServerInfo

WORKSPACE, PROJECT = "values", "roundtrip"


def _run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def test_histograms_round_trip_exactly(any_live_server: ServerInfo) -> None:
    """Counts, edges and stats come back exactly; a series that kept its edges shares them;
    densities stay densities; a given step already stored is overwritten."""
    rng = np.random.default_rng(7)
    run = _run()
    sent = {}
    with metrana.session(workspace_name=WORKSPACE, project_name=PROJECT, run_name=run,
                         ingestion_url=any_live_server.url) as session:
        fixed = np.linspace(-4, 4, 65)
        for step in range(20):
            values = rng.normal(step / 10, 1, 5000).astype(np.float32)
            histogram = metrana.Histogram.from_values(values, bins=64, range=(-4, 4))
            sent[step] = (histogram, values)
            session.log_histogram("weights", histogram)
        session.log_histogram("grads", metrana.Histogram([0, 1, 3], densities=[0.25, 0.375]),
                              step=5)
        session.log_histogram("grads", metrana.Histogram([0, 2, 3], densities=[0.5, 0.0]),
                              step=5)  # overwrites step 5
        session.log_histogram("grads", rng.normal(size=100), step=9)  # raw values, binned
        metrics = session.close()
    assert metrics.sent == 23 and metrics.dropped == 0
    with QueryClient(WORKSPACE, PROJECT, url=any_live_server.url) as client:
        frame = client.fetch_histogram_series(run, "weights")
        assert frame["step"].tolist() == list(range(20))
        for row in frame.itertuples():
            histogram, values = sent[row.step]
            assert np.array_equal(row.edges, fixed)
            assert row.counts.dtype == np.int64
            assert np.array_equal(row.counts, np.asarray(histogram.counts))
            assert np.array_equal(row.counts, np.histogram(values, 64, (-4, 4))[0])
            assert row.densities is None
            assert (row.min, row.max, row.sum, row.sum_of_squares) == histogram.stats
            inside = values[(values >= -4) & (values <= 4)].astype(np.float64)
            assert row.sum == pytest.approx(inside.sum(), rel=1e-12)
            assert row.sum_of_squares == pytest.approx(np.dot(inside, inside), rel=1e-12)
        assert len({id(e) for e in frame["edges"]}) == 1  # stored once, shared
        grads = client.fetch_histogram_series(run, "grads")
        assert grads["step"].tolist() == [5, 9]
        assert grads["edges"][0].tolist() == [0.0, 2.0, 3.0]
        assert grads["densities"][0].tolist() == [0.5, 0.0] and grads["counts"][0] is None
        assert np.isnan(grads["min"][0])
        assert grads["counts"][1].sum() == 100


def test_scatters_round_trip_exactly(any_live_server: ServerInfo) -> None:
    rng = np.random.default_rng(3)
    run = _run()
    clouds = {step: rng.normal(size=(3, 50 + step)) for step in range(4)}
    with metrana.session(workspace_name=WORKSPACE, project_name=PROJECT, run_name=run,
                         ingestion_url=any_live_server.url) as session:
        for step, (xs, ys, zs) in clouds.items():
            session.log_scatter("actions", xs, ys, x_title="steer", y_title="throttle")
            session.log_scatter3d("embedding", xs.tolist(), ys, zs, step=step * 10)
        session.log_scatter("actions", [1.0], [2.0], step=1)  # auto then manual: refused
        session.log_scatter3d("embedding", [], [], [], step=10)  # overwritten by an empty one
        metrics = session.close()
    assert metrics.sent == 9 and metrics.invalid == 1
    with QueryClient(WORKSPACE, PROJECT, url=any_live_server.url) as client:
        actions = client.fetch_scatter_series(run, "actions")
        assert list(actions.columns) == ["step", "x", "y"]
        for step, (xs, ys, _) in clouds.items():
            rows = actions[actions["step"] == step]
            assert rows["x"].tolist() == xs.tolist() and rows["y"].tolist() == ys.tolist()
        one = client.fetch_scatter_series(run, "embedding", step=20)
        xs, ys, zs = clouds[2]
        assert (one["x"].tolist(), one["y"].tolist(), one["z"].tolist()) == \
            (xs.tolist(), ys.tolist(), zs.tolist())
        assert client.fetch_scatter_series(run, "embedding", step=10).empty
        with pytest.raises(QueryRequestError, match="no histogram series 'actions'"):
            client.fetch_histogram_series(run, "actions")


def test_spooled_histograms_arrive_through_sync(any_live_server: ServerInfo,
                                               tmp_path: Path) -> None:
    """Offline: histograms and clouds wait in the spool and arrive exactly with sync()."""
    run = _run()
    spool = tmp_path / "spool"
    histogram = metrana.Histogram.from_values(np.arange(1000) % 17, bins=17)
    with metrana.session(workspace_name=WORKSPACE, project_name=PROJECT, run_name=run,
                         mode="offline", spool_dir=str(spool)) as session:
        session.log_histogram("h", histogram, step=3)
        session.log_scatter("s", [0.5, 1.5], [2.5, 3.5], x_title="a")
        session.log("loss", 0.25)
        metrics = session.close()
    assert metrics.spooled == 3
    report = metrana.sync(spool, ingestion_url=any_live_server.url)
    assert report.delivered == 3, report
    with QueryClient(WORKSPACE, PROJECT, url=any_live_server.url) as client:
        frame = client.fetch_histogram_series(run, "h")
        assert frame["step"].tolist() == [3]
        assert np.array_equal(frame["counts"][0], np.asarray(histogram.counts))
        assert np.array_equal(frame["edges"][0], histogram.edges)
        assert (frame["min"][0], frame["max"][0]) == (0.0, 16.0)
        cloud = client.fetch_scatter_series(run, "s")
        assert cloud["x"].tolist() == [0.5, 1.5] and cloud["y"].tolist() == [2.5, 3.5]

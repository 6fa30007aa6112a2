"""``metrana.Histogram``, ``log_histogram``, ``log_scatter`` and ``log_scatter3d`` at the call
site: every refusal says what is wrong, nothing else is lost, and a metric keeps one kind."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import metrana
from metrana._values import MAX_SCATTER_POINTS
from metrana.query import QueryClient
from metrana.server import ServerInfo


def _counts(histogram: metrana.Histogram) -> Any:
    assert histogram.counts is not None
    return histogram.counts


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[metrana.Session]:
    with metrana.session(workspace_name="w", project_name="p", run_name="r", mode="offline",
                         spool_dir=str(tmp_path / "spool")) as session:
        yield session


BAD_HISTOGRAMS: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"edges": [0, 1, 2]}, ValueError, "exactly one of counts= or densities="),
    ({"edges": [0, 1, 2], "counts": [1, 2], "densities": [0.5, 0.5]}, ValueError,
     "exactly one of counts= or densities="),
    ({"edges": [0, 1], "counts": [1, 2]}, ValueError,
     "edges must be one more than its counts: 2 edges for 2 bins"),
    ({"edges": [0, 2, 1], "counts": [1, 2]}, ValueError,
     "strictly increasing: edge 2 (1.0) is not above edge 1 (2.0)"),
    ({"edges": [0, 1, float("inf")], "counts": [1, 2]}, ValueError, "edges must be finite"),
    ({"edges": [0, 1, 2], "counts": [1, -2]}, ValueError, "counts must be >= 0, got -2 at bin 1"),
    ({"edges": [0, 1, 2], "counts": [1, 2.5]}, ValueError, "counts must be whole numbers"),
    ({"edges": [0, 1, 2], "counts": ["a", "b"]}, TypeError, "counts must be integers"),
    ({"edges": [0, 1, 2], "densities": [0.1, float("nan")]}, ValueError,
     "densities must be finite and >= 0"),
    ({"edges": np.arange(514), "counts": np.ones(513, int)}, ValueError,
     "1 to 512 bins, got 513 counts"),
    ({"edges": [0], "counts": []}, ValueError, "1 to 512 bins, got 0 counts"),
    ({"edges": [0, 1], "counts": [1], "stats": (0, 1, 2)}, ValueError,
     "stats must be (min, max, sum, sum_of_squares), got 3 numbers"),
    ({"edges": [0, 1], "counts": [1], "stats": (2, 1, 2, 4)}, ValueError,
     "min 2.0 is above max 1.0"),
    ({"edges": [0, 1], "counts": [1], "stats": (0, 1, float("nan"), 4)}, ValueError,
     "stats must be finite"),
    ({"edges": "abc", "counts": [1]}, TypeError, "Histogram edges must be an array"),
]


@pytest.mark.parametrize(("arguments", "error", "message"), BAD_HISTOGRAMS)
def test_a_bad_histogram_is_refused_with_its_reason(arguments: dict[str, Any],
                                                    error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=re.escape(message)):
        metrana.Histogram(**arguments)


def test_from_values_counts_and_stats_are_exact() -> None:
    """Any shape, lists and arrays alike; counts as numpy's; NaN and inf left out, once said."""
    values = np.random.default_rng(1).normal(size=(10, 100)).astype(np.float32)
    values[0, :3] = [np.nan, np.inf, -np.inf]
    with pytest.warns(RuntimeWarning, match="3 of 1,000 values are NaN or ±inf"):
        histogram = metrana.Histogram.from_values(values, bins=20)
    finite = values[np.isfinite(values)].astype(np.float64)
    counts, edges = np.histogram(finite, 20)
    assert np.array_equal(_counts(histogram), counts)
    assert np.array_equal(histogram.edges, edges)
    assert histogram.stats == pytest.approx(
        (finite.min(), finite.max(), finite.sum(), np.dot(finite, finite)), rel=1e-12)
    assert histogram.stats is not None
    assert histogram.stats[:2] == (finite.min(), finite.max())
    assert _counts(metrana.Histogram.from_values([1, 2, 2, 3], bins=3)).tolist() == [1, 2, 1]
    assert _counts(metrana.Histogram.from_values([5.0, 5.0], bins=2)).tolist() == [0, 2]
    with pytest.raises(ValueError, match="bins must be 1 to 512, got 0"):
        metrana.Histogram.from_values([1.0], bins=0)
    with pytest.raises(ValueError, match=re.escape("range must be two finite numbers, low < high")):
        metrana.Histogram.from_values([1.0], range=(1, 1))
    with pytest.raises(TypeError, match="takes numbers, got an array of <U1"):
        metrana.Histogram.from_values(["a"])


def test_from_values_reads_torch_tensors_without_importing_it_itself() -> None:
    torch = pytest.importorskip("torch")
    tensor = torch.linspace(0, 1, 101, dtype=torch.bfloat16).reshape(1, 101)
    histogram = metrana.Histogram.from_values(tensor, bins=4)
    assert _counts(histogram).sum() == 101
    assert histogram.stats is not None and histogram.stats[1] == 1.0


def test_log_calls_refuse_bad_input_at_the_call_site(offline: metrana.Session) -> None:
    with pytest.raises(TypeError, match=r"log_histogram\('h'\) takes a metrana.Histogram or an "
                                        r"array of values to bin, got float"):
        offline.log_histogram("h", 0.5)
    with pytest.raises(ValueError, match=r"log_scatter\('s'\): xs, ys must have equal lengths, "
                                         "got xs=2, ys=1"):
        offline.log_scatter("s", [1, 2], [1])
    with pytest.raises(ValueError, match=r"log_scatter3d\('s3'\): xs, ys, zs must have equal "
                                         "lengths, got xs=1, ys=1, zs=2"):
        offline.log_scatter3d("s3", [1], [1], [1, 2])
    with pytest.raises(ValueError, match=r"ys holds 1 NaN or ±inf values \(the first at index 1\)"):
        offline.log_scatter("s", [1, 2], [1, np.nan])
    with pytest.raises(ValueError, match="at most 32,768 points a step, got 32,769"):
        offline.log_scatter("s", np.zeros(MAX_SCATTER_POINTS + 1), np.zeros(MAX_SCATTER_POINTS + 1))
    with pytest.raises(TypeError, match="must hold numbers"):
        offline.log_scatter("s", ["a"], ["b"])
    with pytest.raises(ValueError, match="step must be >= 0"):
        offline.log_histogram("h", [1.0, 2.0], step=-1)
    with pytest.raises(TypeError, match="x_title must be a str"):
        offline.log_scatter("s", [1], [1], x_title=3)  # type: ignore[arg-type]
    with pytest.raises(metrana.MetranaMetricNameError):
        offline.log_histogram("bad name", [1.0])
    assert offline.get_metrics().logged == 0  # nothing was queued


def test_a_metric_keeps_one_kind(offline: metrana.Session) -> None:
    offline.log("loss", 0.5)
    offline.log_histogram("weights", [1.0, 2.0])
    offline.log_scatter("cloud", [1.0], [2.0], x_title="a")
    with pytest.raises(TypeError, match="metric 'loss' holds scalar values in this run; it "
                                        "cannot also take histogram values"):
        offline.log_histogram("loss", [1.0])
    with pytest.raises(TypeError, match="metric 'weights' holds histogram values in this run; "
                                        "it cannot also take scalar values"):
        offline.log("weights", 1.0)
    with pytest.raises(TypeError, match=re.escape("metric 'cloud' holds scatter (2-D) values in "
                                                  "this run; it cannot also take scatter (3-D)")):
        offline.log_scatter3d("cloud", [1.0], [2.0], [3.0])
    with pytest.raises(ValueError, match="'cloud' was first logged with axis titles"):
        offline.log_scatter("cloud", [1.0], [2.0], x_title="b")
    offline.log_scatter("cloud", [1.0], [2.0])  # no titles: the series' own
    assert offline.get_metrics().logged == 4


def test_module_functions_log_to_the_current_run(live_server: ServerInfo) -> None:
    """metrana.log_histogram & co. next to scalars; a refused call loses nothing else."""
    run = f"module-{uuid.uuid4().hex[:8]}"
    metrana.init(workspace_name="values", project_name="module", run_name=run,
                 ingestion_url=live_server.url)
    try:
        metrana.log("loss", 1.0)
        metrana.log_histogram("w", metrana.Histogram([0, 1], counts=[3]))
        with pytest.raises(ValueError):
            metrana.log_histogram("w", metrana.Histogram([0, 1], counts=[-3]))
        metrana.log_scatter("s", [1.0], [2.0], step=4)
        metrana.log_scatter3d("s3", [1.0], [2.0], [3.0], z_title="z")
        metrana.log("loss", 2.0)
        metrana.flush(30)
    finally:
        metrics = metrana.close()
    assert metrics.sent == 5 and metrics.dropped == 0
    with QueryClient("values", "module", url=live_server.url) as client:
        assert client.fetch_histogram_series(run, "w")["counts"][0].tolist() == [3]
        assert client.fetch_scatter_series(run, "s")["step"].tolist() == [4]
        assert client.fetch_scatter_series(run, "s3")["z"].tolist() == [3.0]
        assert client.fetch_float_series(run, "loss")["loss"].tolist() == [1.0, 2.0]


def test_a_heavy_stream_is_cut_into_requests_of_bounded_size(live_server: ServerInfo) -> None:
    """512-bin histograms and 32,768-point clouds: every request stays a few MB (the batcher
    weighs them), and everything arrives."""
    run = f"heavy-{uuid.uuid4().hex[:8]}"
    histogram = metrana.Histogram(np.arange(513.0), counts=np.arange(512) * 1000)
    cloud = np.zeros(MAX_SCATTER_POINTS)
    with metrana.session(workspace_name="values", project_name="heavy", run_name=run,
                         ingestion_url=live_server.url) as session:
        for _ in range(400):
            session.log_histogram("h", histogram)
        for _ in range(3):
            session.log_scatter("c", cloud, cloud)
        metrics = session.close()
    assert metrics.sent == 403
    assert metrics.requests >= 3 + 400 * 65 // 10_000  # never one request of everything
    with QueryClient("values", "heavy", url=live_server.url) as client:
        assert len(client.fetch_histogram_series(run, "h")) == 400


def test_the_spool_keeps_a_histogram_exactly(tmp_path: Path) -> None:
    from metrana._series import SeriesKey
    from metrana._spool import decode_record, encode_record

    key = SeriesKey(False, "h", "ML_STEP", (), kind=2)
    histogram = metrana.Histogram([0.1, 0.2, 0.30000000000000004], densities=[1e-300, 7.5],
                                  stats=(0.1, 0.3, 1.0, 2.0))
    point: Any = (4, None, histogram, 17)
    session, series = decode_record(encode_record(9, [(key, True, [point])]))
    (decoded, manual, points), = series
    assert session == 9 and manual and decoded.kind == 2
    assert list(points) == [point]
    assert json.loads(encode_record(9, [(SeriesKey(False, "x", "ML_STEP", ()), False,
                                         [(0, None, 1.0, 5)])]))["series"][0][-1] == [[0, None,
                                                                                        1.0, 5]]

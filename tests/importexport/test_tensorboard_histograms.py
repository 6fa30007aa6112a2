"""TensorBoard histograms imported as histogram series: the buckets the event file holds,
read back through ``metrana.query``, against numpy on the same data and tensorboard's reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from metrana._cli import main
from metrana.query import QueryClient

STEPS = 4


def data(step: int, size: int) -> np.ndarray:
    """What the run bins at ``step``: a normal sample whose spread grows with the step."""
    out: np.ndarray = np.random.default_rng(step).normal(scale=1 + step, size=size)
    return out


@pytest.fixture(scope="module")
def logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run as torch writes it: scalars, hparams, histograms with torch's default
    ('tensorflow') bins and numpy's 'auto' bins (legacy HistogramProto), and a histograms-plugin
    tensor (TF2's form, written with tensorboard's own numpy summary)."""
    from tensorboard.plugins.histogram.summary_v2 import histogram_pb
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb_histograms") / "logs"
    with SummaryWriter(str(root / "run")) as writer:
        for step in range(STEPS):
            writer.add_scalar("loss", 1.0 / (step + 1), step)
            writer.add_histogram("weights", data(step, 1000), step)
            writer.add_histogram("grads", data(step + 10, 300), step, bins="auto")
            writer._get_file_writer().add_summary(
                histogram_pb("activations", data(step + 20, 200), buckets=12), step)
        writer.add_hparams({"lr": 0.01, "optimizer": "sgd"}, {"hparam/score": 0.5},
                           run_name=".")
    return root


def file_contents(logdir: Path) -> Any:
    """The run's event file as tensorboard's own reader loads it, every event kept."""
    from tensorboard.backend.event_processing.event_accumulator import (
        HISTOGRAMS,
        TENSORS,
        EventAccumulator,
    )

    accumulator = EventAccumulator(str(logdir / "run"), size_guidance={HISTOGRAMS: 0,
                                                                      TENSORS: 0})
    accumulator.Reload()
    return accumulator


def ns(seconds: float) -> int:
    whole = int(np.floor(seconds))
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def test_histograms_are_imported_as_the_event_file_holds_them(
        logdir: Path, db_target: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each histogram is stored at its step and wall time with the file's bucket edges and
    counts (runs of empty buckets merged into one) and its stats; numpy's counts of the same
    data over the stored edges are the stored counts; scalars and hparams come alongside; the
    summary lists nothing skipped; a second import adds nothing."""
    db = db_target
    assert main(["import", "tensorboard", str(logdir), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out
    assert f"imported {STEPS * 4 + 1:,} points of 5 series" in out
    events = file_contents(logdir)

    with QueryClient("imported", "logs", db=db) as client:
        weights = client.fetch_histogram_series("run", "weights")
        grads = client.fetch_histogram_series("run", "grads")
        activations = client.fetch_histogram_series("run", "activations")
        loss = client.fetch_float_series("run", "loss")["loss"].loc["run"]
        config = client.fetch_runs(attributes=["config/lr", "config/optimizer"]).iloc[0]
    assert loss.to_dict() == {s: np.float32(1.0 / (s + 1)) for s in range(STEPS)}
    assert (config["config/lr"], config["config/optimizer"]) == (0.01, "sgd")

    for stored, tag, offset, size in ((weights, "weights", 0, 1000), (grads, "grads", 10, 300)):
        written = events.Histograms(tag)
        assert stored["step"].tolist() == [e.step for e in written] == list(range(STEPS))
        # to the millisecond: the protocol's HistogramPoint carries timestampMillis
        assert stored["timestamp"].astype("int64").tolist() == [
            ns(e.wall_time) // 1_000_000 * 1_000_000 for e in written]
        for row, event in zip(stored.itertuples(), written, strict=True):
            proto = event.histogram_value
            limits, buckets = np.array(proto.bucket_limit), np.array(proto.bucket)
            # torch writes an empty first bucket whose right limit is where the values start
            assert buckets[0] == 0
            assert np.isin(row.edges, limits).all()  # every edge is one the file holds
            assert row.edges[0] == limits[0] and row.edges[-1] == limits[-1]
            assert row.counts[row.counts > 0].tolist() == buckets[buckets > 0].tolist()
            assert row.counts.sum() == proto.num == size
            assert (row.min, row.max, row.sum, row.sum_of_squares) == (
                proto.min, proto.max, proto.sum, proto.sum_squares)
            values = data(row.step + offset, size)
            assert (np.histogram(values, bins=row.edges)[0] == row.counts).all()
    assert max(len(e) for e in weights["edges"]) - 1 <= 512  # torch wrote ~600 buckets

    written_tensors = events.Tensors("activations")
    assert activations["step"].tolist() == [e.step for e in written_tensors]
    for row, event in zip(activations.itertuples(), written_tensors, strict=True):
        from tensorboard.util import tensor_util

        buckets = tensor_util.make_ndarray(event.tensor_proto)
        assert row.edges.tolist() == [*buckets[:, 0].tolist(), float(buckets[-1, 1])]
        assert row.counts.tolist() == buckets[:, 2].astype(np.int64).tolist()
        values = data(row.step + 20, 200)
        assert (np.histogram(values, bins=row.edges)[0] == row.counts).all()
        assert np.isnan(row.min)  # the tensor form holds no stats

    assert main(["import", "tensorboard", str(logdir), "--db", db]) == 0
    assert "imported 0 points" in capsys.readouterr().out
    with QueryClient("imported", "logs", db=db) as client:
        again = client.fetch_histogram_series("run", "weights")
    assert again["step"].tolist() == weights["step"].tolist()
    assert all((a == b).all() for a, b in zip(again["counts"], weights["counts"], strict=True))

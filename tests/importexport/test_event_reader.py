"""The fast event reader reads what TensorBoard's own reader reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from metrana._import.tensorboard import read_run
from metrana._import.tfrecord import decode_scalars, frame


def test_scalars_read_by_the_column_equal_tensorboards_own_reading(tmp_path: Path) -> None:
    """Random tags (of several lengths, non-ASCII too), steps of 1- to 7-byte varints, wall times and
    float32 values (NaN, inf): per tag, the same points as TensorBoard's EventFileLoader."""
    from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    rng = np.random.default_rng(7)
    tags = ["a", "loss", "train/loss", "héllo/wörld", "x" * 120, "val loss"]
    next_step = dict.fromkeys(tags, 0)
    writer = EventFileWriter(str(tmp_path))
    for _ in range(3000):
        tag = tags[int(rng.integers(len(tags)))]
        step = next_step[tag]
        next_step[tag] = step + int(rng.choice([1, 127, 2**20, 2**40]))
        value = float(rng.choice([rng.normal(), math.nan, math.inf, -0.0]))
        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag,
                                                                      simple_value=value)])
        writer.add_event(event_pb2.Event(wall_time=1.7e9 + rng.random() * 1e6, step=step,
                                         summary=summary))
    writer.close()
    (path,) = tmp_path.iterdir()

    expected: dict[str, list[tuple[int, float, float]]] = {}
    for event in LegacyEventFileLoader(str(path)).Load():
        for value in event.summary.value:
            expected.setdefault(value.tag, []).append(
                (event.step, event.wall_time, value.simple_value))
    data = path.read_bytes()
    fast = decode_scalars(data, frame(data))
    assert len(fast.steps) > 2900  # the column path took (nearly) all of them
    run = read_run(tmp_path)
    got = {s.name: s for s in run.series}
    assert sorted(got) == sorted(t.replace(" ", "_") for t in expected)
    for tag, points in expected.items():
        series = got[tag.replace(" ", "_")]
        steps, walls, values = (np.array(column) for column in zip(*points, strict=True))
        assert series.steps.tolist() == steps.tolist()
        np.testing.assert_array_equal(series.values, values.astype(np.float32))
        # ns from the float seconds: within the float's own resolution (~0.24 µs at 1.7e9 s)
        assert np.abs(series.timestamps - walls * 1e9).max() < 1000


def test_a_damaged_record_stops_the_file_there(tmp_path: Path) -> None:
    """A flipped byte fails the record's CRC: the records before it are read, none after."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path)) as writer:
        for step in range(10):
            writer.add_scalar("loss", float(step), step)
    (path,) = tmp_path.iterdir()
    data = bytearray(path.read_bytes())
    framing = frame(bytes(data))
    data[int(framing.starts[6]) + 3] ^= 0xFF  # inside the 6th record's data (step 5)
    damaged = frame(bytes(data))
    assert damaged.problem is not None and "damaged record" in damaged.problem
    assert len(damaged.starts) == 6

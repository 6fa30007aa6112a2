"""TensorBoard log directories as runs: every scalar (no sampling), hparams as config.

A run is a directory holding ``*tfevents*`` files, anywhere under the log directory, named by
its path relative to it (``seed-1``, ``sweep/lr-0.1``; the log directory itself by its own
name). Its files are read in name order (their names start with the time they were opened), as
TensorBoard does. What each summary value becomes is decided in one place, :data:`HANDLERS`,
keyed by the value's kind (its plugin): scalars become series, histograms histogram series
(:mod:`.tb_histograms` says how their buckets map), hparams become config, and every other
kind — images, audio, text, graphs — is counted as skipped, by kind, for the summary.

A restarted job that logs a step again (TensorBoard's "orphaned" data, also marked by a
``SessionLog.START`` event) keeps what was written later, as TensorBoard shows it: see
:func:`.source.increasing`.
"""

from __future__ import annotations

import mmap
import os
import re
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .._values import MAX_BINS
from .source import HistogramData, RunData, SeriesData, SourceRun, increasing, metric_name, to_ns
from .tb_histograms import from_buckets, from_proto
from .tfrecord import decode_scalars, frame

__all__ = ["HANDLERS", "find_runs", "read_run"]

_KEY_UNSAFE = re.compile(r"[^a-zA-Z0-9._\-:/]")


def find_runs(logdir: Path) -> list[SourceRun]:
    """Every run directory under ``logdir`` (itself included), in path order."""
    root = logdir.expanduser().resolve()
    runs = []
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        if not any("tfevents" in name for name in files):
            continue
        relative = Path(directory).relative_to(root).as_posix()
        name = root.name if relative == "." else relative
        runs.append(SourceRun(source_id=f"tensorboard:{root}:{relative}",
                              name=_text(name) or "run", experiment=None,
                              read=partial(read_run, Path(directory))))
    return runs


def _text(name: str) -> str:
    """A file name as text a run name can hold (undecodable bytes shown, not dropped)."""
    return name.encode("utf-8", "backslashreplace").decode("utf-8")


@attrs.define(eq=False)
class _Tag:
    """Points of one tag in event order: positions (``order``), steps, wall times, values."""

    order: list[Any] = attrs.Factory(list)
    steps: list[Any] = attrs.Factory(list)
    walls: list[Any] = attrs.Factory(list)
    values: list[Any] = attrs.Factory(list)


@attrs.define(eq=False)
class _Reading:
    """One run being read: its tags (scalar, histogram), restarts, config, and what was
    skipped."""

    data: RunData
    tags: dict[str, _Tag] = attrs.Factory(dict)
    histograms: dict[str, _Tag] = attrs.Factory(dict)  # values: metrana Histograms
    coarsened: Counter[str] = attrs.Factory(Counter)  # tag -> histograms of > 512 bins summed
    plugins: dict[str, str] = attrs.Factory(dict)  # tag -> plugin (TF2 writes it only once)
    restarts: list[tuple[int, int]] = attrs.Factory(list)  # (order, step) of SessionLog.START

    def tag(self, name: str) -> _Tag:
        found = self.tags.get(name)
        if found is None:
            found = self.tags[name] = _Tag()
        return found


def read_run(directory: Path) -> RunData:
    """Read every event file of one run directory."""
    reading = _Reading(RunData())
    files = sorted(p for p in directory.iterdir() if p.is_file() and "tfevents" in p.name)
    order = 0
    for path in files:
        order += _read_file(path, reading, order)
    _finish(reading)
    return reading.data


def _read_file(path: Path, reading: _Reading, first: int) -> int:
    """Read one event file into ``reading``; its events are numbered from ``first``. Returns
    how many records it held."""
    from tensorboard.compat.proto import event_pb2

    with ExitStack() as stack:
        handle = stack.enter_context(open(path, "rb"))
        size = os.fstat(handle.fileno()).st_size
        if size == 0:
            return 0
        buffer = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        stack.callback(_close_map, buffer)
        framing = frame(buffer)
        if framing.problem is not None:
            reading.data.notes.append(f"{path.name}: stopped at {framing.problem}; the rest of "
                                      "that file was not read")
        fast = decode_scalars(buffer, framing)
        for tag_id, tag in enumerate(fast.tags):
            mine = fast.tag_index == tag_id
            into = reading.tag(tag)
            into.order.append(fast.index[mine] + first)
            into.steps.append(fast.steps[mine])
            into.walls.append(fast.wall_times[mine])
            into.values.append(fast.values[mine])
            reading.plugins.setdefault(tag, "scalars")
        slow = np.ones(len(framing.starts), dtype=bool)
        slow[fast.index] = False
        parse = event_pb2.Event.FromString
        for i in np.flatnonzero(slow).tolist():
            start = int(framing.starts[i])
            event = parse(buffer[start:start + int(framing.lengths[i])])
            _event(event, first + i, reading)
        return len(framing.starts)


def _close_map(buffer: mmap.mmap) -> None:
    """Close an event file's map, unless numpy views of it are still referenced: by the frames
    of an exception on its way out (Ctrl-C while reading), whose own error must not be
    replaced by BufferError. The map is closed when they are collected."""
    try:
        buffer.close()
    except BufferError:
        pass


def _event(event: Any, order: int, reading: _Reading) -> None:
    what = event.WhichOneof("what")
    if what == "summary":
        for value in event.summary.value:
            kind = _kind(value, reading.plugins)
            HANDLERS.get(kind, _skip)(reading, kind, event, value, order)
    elif what == "session_log":
        if event.session_log.status == 1:  # SessionLog.START: a restart from this step
            reading.restarts.append((order, int(event.step)))
    elif what in ("graph_def", "meta_graph_def"):
        reading.data.skipped["graphs"] += 1
    elif what == "tagged_run_metadata":
        reading.data.skipped["run metadata"] += 1


def _kind(value: Any, plugins: dict[str, str]) -> str:
    """What a summary value is: ``scalars``, ``histograms``, ``images``, ``audio``, or a
    tensor's plugin (``text``, ``hparams``, ``pr_curves``, ...)."""
    field = value.WhichOneof("value")
    if field == "simple_value":
        return "scalars"
    if field in ("histo", "obsolete_old_style_histogram"):
        return "histograms"
    if field in ("image", "audio"):
        return "images" if field == "image" else "audio"
    plugin = value.metadata.plugin_data.plugin_name if value.HasField("metadata") else ""
    if plugin:
        plugins.setdefault(value.tag, plugin)
        return str(plugin)
    return plugins.get(value.tag, "tensors")


Handler = Callable[[_Reading, str, Any, Any, int], None]


def _scalar(reading: _Reading, kind: str, event: Any, value: Any, order: int) -> None:
    if value.WhichOneof("value") == "simple_value":
        number = float(value.simple_value)
    else:
        from tensorboard.util import tensor_util

        array = tensor_util.make_ndarray(value.tensor)
        if array.size != 1 or array.dtype.kind not in "fiub":
            reading.data.skipped["tensors"] += 1
            return
        number = float(array.reshape(-1)[0])
    into = reading.tag(value.tag)
    into.order.append(order)
    into.steps.append(int(event.step))
    into.walls.append(float(event.wall_time))
    into.values.append(number)


def _histogram(reading: _Reading, kind: str, event: Any, value: Any, order: int) -> None:
    """A histogram, as the legacy proto or as the histograms plugin's ``[k, 3]`` tensor."""
    try:
        if value.WhichOneof("value") == "histo":
            histogram, coarsened = from_proto(value.histo)
        elif value.WhichOneof("value") == "tensor":
            from tensorboard.util import tensor_util

            histogram, coarsened = from_buckets(tensor_util.make_ndarray(value.tensor))
        else:  # obsolete_old_style_histogram: never written by TensorBoard's writers
            raise ValueError("an obsolete old-style histogram")
    except ValueError as exc:
        reading.data.skipped["histograms"] += 1
        reading.data.notes.append(f"{value.tag}: a histogram at step {event.step} not imported "
                                  f"({exc})")
        return
    if coarsened:
        reading.coarsened[value.tag] += 1
    into = reading.histograms.get(value.tag)
    if into is None:
        into = reading.histograms[value.tag] = _Tag()
    into.order.append(order)
    into.steps.append(int(event.step))
    into.walls.append(float(event.wall_time))
    into.values.append(histogram)


def _hparams(reading: _Reading, kind: str, event: Any, value: Any, order: int) -> None:
    """The hparams plugin's session start holds the run's hyperparameters: its config."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    data = plugin_data_pb2.HParamsPluginData.FromString(value.metadata.plugin_data.content)
    if not data.HasField("session_start_info"):
        return  # the experiment's description and the session's end carry no values
    for key, item in data.session_start_info.hparams.items():
        which = item.WhichOneof("kind")
        if which == "number_value":
            number = float(item.number_value)
            config_value: Any = int(number) if number.is_integer() and abs(number) < 2**53 \
                else number
        elif which == "string_value":
            config_value = str(item.string_value)
        elif which == "bool_value":
            config_value = bool(item.bool_value)
        else:
            continue
        reading.data.config[_KEY_UNSAFE.sub("_", key) or "_"] = config_value


def _skip(reading: _Reading, kind: str, event: Any, value: Any, order: int) -> None:
    reading.data.skipped[kind] += 1


# What each kind of summary value becomes. Images, audio and text are not metrics; any kind
# not listed is skipped under its plugin's name.
HANDLERS: dict[str, Handler] = {
    "scalars": _scalar,
    "hparams": _hparams,
    "histograms": _histogram,
    "images": _skip,
    "audio": _skip,
    "text": _skip,
}


def _concat(parts: list[Any], dtype: Any) -> Any:
    arrays = [p if isinstance(p, np.ndarray) else None for p in parts]
    scalars = [p for p in parts if not isinstance(p, np.ndarray)]
    pieces = [a for a in arrays if a is not None]
    if scalars:
        pieces.append(np.array(scalars, dtype=dtype))
    return np.concatenate(pieces).astype(dtype, copy=False) if pieces else np.zeros(0, dtype)


def _finish(reading: _Reading) -> None:
    """Each tag's points in event order, restarts and rewrites resolved, as a series."""
    data = reading.data
    names: set[str] = set()
    for tag, points in sorted(reading.tags.items()):
        kept = _kept(reading, tag, points)
        if kept is None:
            continue
        steps, walls, positions = kept
        values = _concat(points.values, np.float64)[positions]
        data.series.append(SeriesData(_unique(data, tag, names), steps, values, to_ns(walls)))
    for tag, points in sorted(reading.histograms.items()):
        kept = _kept(reading, tag, points)
        if kept is None:
            continue
        steps, walls, positions = kept
        histograms = [points.values[i] for i in positions.tolist()]
        data.histograms.append(HistogramData(_unique(data, tag, names), steps, to_ns(walls),
                                             histograms))
        if reading.coarsened[tag]:
            data.notes.append(f"{tag}: {reading.coarsened[tag]:,} histograms had more than "
                              f"{MAX_BINS} bins after merging empty ones: neighbouring bins "
                              "were summed")


def _kept(reading: _Reading, tag: str, points: _Tag) -> tuple[Any, Any, Any] | None:
    """A tag's points to import: steps, wall times and positions into its values, in event
    order, without what a restart or a later write at the same step replaced, nor negative
    steps (None: no point)."""
    data = reading.data
    order = _concat(points.order, np.int64)
    if not len(order):
        return None
    sort = np.argsort(order, kind="stable")
    order = order[sort]
    steps = _concat(points.steps, np.int64)[sort]
    walls = _concat(points.walls, np.float64)[sort]
    keep = np.ones(len(order), dtype=bool)
    for at, step in reading.restarts:
        keep &= ~((order < at) & (steps >= step))
    negative = keep & (steps < 0)
    if negative.any():
        data.notes.append(f"{tag}: {int(negative.sum()):,} points with a negative step "
                          "skipped (metrana steps start at 0)")
        keep &= ~negative
    restarted = len(order) - int(keep.sum()) - int(negative.sum())
    steps, walls, positions = steps[keep], walls[keep], sort[keep]
    later = increasing(steps)
    data.superseded += restarted + len(steps) - int(later.sum())
    return steps[later], walls[later], positions[later]


def _unique(data: RunData, tag: str, names: set[str]) -> str:
    """The tag's metric name, numbered when another tag of the run already has it."""
    name = metric_name(tag)
    if name in names:
        unique = 2
        while f"{name}_{unique}" in names:
            unique += 1
        data.notes.append(f"tag {tag!r} imported as {name}_{unique} ({name} is taken)")
        name = f"{name}_{unique}"
    names.add(name)
    return name

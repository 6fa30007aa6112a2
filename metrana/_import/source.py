"""What a source hands the loader: one run's identity, config and series, and what it skipped.

Sources read everything a run holds into numpy columns before the run is logged, so the loader
can check it once (steps strictly increasing, none negative), and resume where the service's
copy of the run ends.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

__all__ = ["HistogramData", "RunData", "SeriesData", "SourceRun", "increasing", "metric_name", "to_ns"]

_WHITESPACE = re.compile(r"\s+")


@attrs.define(eq=False)
class SeriesData:
    """One series: ``steps`` strictly increasing and >= 0, ``timestamps`` Unix ns."""

    name: str
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    timestamps: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.steps)


@attrs.define(eq=False)
class HistogramData:
    """One histogram series: ``steps`` strictly increasing and >= 0, ``timestamps`` Unix ns,
    a :class:`metrana.Histogram` a step."""

    name: str
    steps: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    histograms: list[Any]

    def __len__(self) -> int:
        return len(self.steps)


@attrs.define(eq=False)
class RunData:
    """A run as read: its series and histogram series, config (flattened into ``config/...``), tags
    (``tags/...``), counts of what was not imported by kind (``histograms``: 3), and notes
    for the summary (a damaged file, negative steps)."""

    series: list[SeriesData] = attrs.Factory(list)
    histograms: list[HistogramData] = attrs.Factory(list)
    config: dict[str, Any] = attrs.Factory(dict)
    tags: dict[str, str] = attrs.Factory(dict)
    skipped: Counter[str] = attrs.Factory(Counter)
    superseded: int = 0  # points logged again at a step (or before a restart): the later kept
    notes: list[str] = attrs.Factory(list)

    @property
    def points(self) -> int:
        return sum(len(s) for s in self.series) + sum(len(h) for h in self.histograms)


@attrs.define(eq=False)
class SourceRun:
    """A run found in a source, read only when its turn comes (``read``)."""

    source_id: str  # stored as the run's ``import/source`` attribute: how a rerun finds it
    name: str  # the run name it gets (unless another run has it)
    experiment: str | None
    read: Callable[[], RunData]


def metric_name(tag: str) -> str:
    """A source's tag as a metric name: whitespace (which metric names cannot hold) as ``_``."""
    name = _WHITESPACE.sub("_", tag.strip())
    return name or "_"


def to_ns(seconds: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Float Unix seconds as integer ns, exactly as the float says (``seconds * 1e9`` alone
    would round to 256 ns at today's dates)."""
    whole = np.floor(seconds)
    return whole.astype(np.int64) * 1_000_000_000 + np.round(
        (seconds - whole) * 1e9).astype(np.int64)


def increasing(steps: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """Which points to keep so that steps strictly increase, the later writes winning: a point
    is kept when every point written after it has a greater step. A step logged again (a
    duplicate, or a restarted job going back) replaces what was logged at and after it — what
    TensorBoard shows of a restarted run (its "orphaned" data is dropped the same way)."""
    n = len(steps)
    keep = np.ones(n, dtype=bool)
    if n > 1:
        later_min = np.minimum.accumulate(steps[::-1])[::-1]  # min of steps[i:]
        keep[:-1] = steps[:-1] < later_min[1:]
    return keep

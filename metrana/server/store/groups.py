"""Runs grouped (by config values), reduced per group on aligned step buckets, with bands.

The semantics, the same for the dashboard's grouped charts and ``QueryClient.aggregate_runs``:

1. One grid of ``n`` equal-width buckets of steps over [lo, hi], shared by every run and group
   (so groups line up on a chart): bucket ``i`` holds the steps ``x`` with
   ``floor((x - lo) / width) == i``, ``width = (hi - lo + 1) / n``.
2. Per run and bucket, the **mean of the run's points there** (an RL metric: of every
   environment's points there — the run's across-environment mean). A run without points in
   a bucket does not take part in it. (Above 32 points a bucket the store reduces 128-point
   blocks, each spread over the buckets its steps span, by the steps each holds: no bucket
   is left without the run between its blocks, and no point is decompressed.)
3. Per group and bucket, across the runs that take part: ``avg``, sample ``std`` (ddof=1;
   NaN for one run), ``min``, ``max``, ``count`` (runs), and the band of the asked kind.

Band kinds are one table (:data:`BAND_KINDS`): an id, a label, and how its lower and upper
edges are computed from the per-run values of a bucket. The per-run matrix
(:class:`RunBuckets`) is kept whole, so an aggregate that needs every run's value is one more
entry, not a new read: ``iqm95`` draws the interquartile mean across runs (the curve) with its
stratified bootstrap 95% interval (the band), as rliable computes sample-efficiency curves
(Agarwal et al., 2021), seeded, so the same view draws the same band.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import numpy.typing as npt

from ..bootstrap import counts, draws, interval, iqm_bounds

__all__ = ["AGGREGATIONS", "BAND_KINDS", "BandKind", "GroupStats", "RunBuckets", "bucket_grid",
           "group_stats", "iqm", "iqm_interval"]

F64 = npt.NDArray[np.float64]
AGGREGATIONS = ("avg", "std", "stderr", "min", "max", "count", "lo", "hi", "mid")


@attrs.frozen
class RunBuckets:
    """Per run (rows) and bucket (columns): the mean of its points (NaN: none there)."""

    means: F64  # shape (runs, n)

    @property
    def present(self) -> npt.NDArray[np.bool_]:
        return ~np.isnan(self.means)


@attrs.frozen
class GroupStats:
    """A group's statistics per bucket (NaN where no run has points)."""

    avg: F64
    std: F64
    min: F64
    max: F64
    count: npt.NDArray[np.int64]

    @property
    def stderr(self) -> F64:
        with np.errstate(invalid="ignore", divide="ignore"):
            out: F64 = self.std / np.sqrt(self.count)
        return out


def group_stats(runs: RunBuckets) -> GroupStats:
    values = runs.means
    count = runs.present.sum(axis=0).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(values, axis=0)
        avg = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        deviation = np.where(runs.present, values - avg, 0.0)
        std = np.where(count > 1, np.sqrt((deviation ** 2).sum(axis=0)
                                          / np.maximum(count - 1, 1)), np.nan)
        low = np.where(count > 0, np.nanmin(np.where(runs.present, values, np.inf), axis=0),
                       np.nan)
        high = np.where(count > 0, np.nanmax(np.where(runs.present, values, -np.inf), axis=0),
                        np.nan)
    return GroupStats(avg, std, low, high, count)


@attrs.frozen
class BandKind:
    """A band drawn around a group's curve: its edges from the group's statistics (and, for
    kinds that need them, every run's values and the answer's seeded random state), and the
    curve itself when the kind has its own centre (the IQM band's IQM; else the mean)."""

    id: str
    label: str
    edges: Callable[[GroupStats, RunBuckets, np.random.RandomState], tuple[F64, F64]]
    center: Callable[[RunBuckets], F64] | None = None


def _around(width: Callable[[GroupStats], F64]
            ) -> Callable[[GroupStats, RunBuckets, np.random.RandomState], tuple[F64, F64]]:
    def edges(stats: GroupStats, runs: RunBuckets, rs: np.random.RandomState
              ) -> tuple[F64, F64]:
        spread = width(stats)
        return stats.avg - spread, stats.avg + spread
    return edges


IQM_REPS = 2000  # bootstrap repetitions of the IQM band (seeded: RandomState(0) per answer)


def _by_count(runs: RunBuckets) -> list[tuple[npt.NDArray[np.intp], F64]]:
    """The buckets grouped by how many runs have a value there, most first: each group's
    bucket indices and its values (present runs × buckets, in run order)."""
    present = runs.present
    count = present.sum(axis=0)
    out = []
    for c in sorted(set(count.tolist()) - {0}, reverse=True):
        buckets = np.flatnonzero(count == c)
        values = runs.means[:, buckets].T[present[:, buckets].T].reshape(len(buckets), c).T
        out.append((buckets, values))
    return out


def iqm(runs: RunBuckets) -> F64:
    """The interquartile mean across runs in each bucket (rliable's IQM: scipy's trim_mean
    cutting a quarter each side), NaN where no run has a value."""
    out = np.full(runs.means.shape[1], np.nan)
    for buckets, values in _by_count(runs):
        low, high = iqm_bounds(values.shape[0])
        out[buckets] = np.sort(values, axis=0)[low:high].mean(axis=0)
    return out


def iqm_interval(stats: GroupStats, runs: RunBuckets, rs: np.random.RandomState
                 ) -> tuple[F64, F64]:
    """The IQM's stratified bootstrap 95% interval in each bucket: the runs with a value
    there resampled, bucket by bucket (rliable's bootstrap of scores runs × 1 × buckets). A
    repetition's IQM comes from how many times it draws each run: the sorted values weighted
    by the part of each one's copies inside the middle half (no sort per repetition)."""
    low_edge = np.full(runs.means.shape[1], np.nan)
    high_edge = np.full(runs.means.shape[1], np.nan)
    for buckets, values in _by_count(runs):
        c = values.shape[0]
        low, high = iqm_bounds(c)
        order = np.argsort(values, axis=0, kind="stable")  # c × buckets
        ordered = np.take_along_axis(values, order, axis=0).T  # buckets × c, sorted
        replicates = []
        for index in draws(rs, c, (len(buckets),), IQM_REPS):
            drawn = np.take_along_axis(counts(index, c), order.T[None], axis=2)
            upto = np.cumsum(drawn, axis=2)
            inside = np.clip(np.minimum(upto, high) - np.maximum(upto - drawn, low), 0, None)
            replicates.append((inside * ordered).sum(axis=2) / (high - low))
        low_edge[buckets], high_edge[buckets] = interval(np.concatenate(replicates))
    return low_edge, high_edge


BAND_KINDS: dict[str, BandKind] = {kind.id: kind for kind in (
    BandKind("std", "± std", _around(lambda s: s.std)),
    BandKind("stderr", "± standard error", _around(lambda s: s.stderr)),
    BandKind("ci95", "95% CI (1.96 · stderr)", _around(lambda s: 1.96 * s.stderr)),
    BandKind("minmax", "min – max", lambda s, runs, rs: (s.min, s.max)),
    BandKind("iqm95", "IQM, 95% bootstrap CI", iqm_interval, iqm),
)}


def bucket_grid(lo: int, hi: int, n: int) -> tuple[float, list[int]]:
    """The buckets' width and each bucket's first step."""
    width = (hi - lo + 1) / n
    return width, [lo + math.ceil(i * width) for i in range(n)]


def bucket_index(x: npt.NDArray[np.int64], lo: int, width: float, n: int
                 ) -> npt.NDArray[np.int64]:
    out: npt.NDArray[np.int64] = np.minimum(((x - lo) / width).astype(np.int64), n - 1)
    return out


def sums_to_means(sums: F64, valid: F64 | npt.NDArray[np.int64]) -> F64:
    """``valid``: how many values each sum adds up (a part of a block's count when blocks are
    spread over buckets: fractional, maybe below 1)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out: F64 = np.where(valid > 0, sums / np.where(valid > 0, valid, 1), np.nan)
    return out


def column(values: Any) -> list[float | None]:
    """A float array as a JSON column: NaN (no value) as None."""
    return [None if v != v else v for v in np.asarray(values, np.float64).tolist()]

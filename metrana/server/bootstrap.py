"""The stratified bootstrap as rliable draws it, all repetitions at once in numpy.

rliable's ``StratifiedBootstrap`` draws, per repetition, ``np.random.choice(runs, shape)``
from numpy's legacy generator: each run resampled with replacement within its stratum (a task,
or a step bucket). One ``randint`` call of many repetitions draws the same numbers as as many
calls of one repetition (the generator's stream just advances), so drawing a block of
repetitions at once gives rliable's draws exactly, for a tenth of its time or less. The
interval is arch's percentile interval, which rliable asks for. Used by the statistics of
groups (:mod:`.statistics`) and the IQM band of grouped curves (:mod:`.store.groups`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK", "CONFIDENCE", "counts", "draws", "interval", "iqm_bounds"]

F64 = npt.NDArray[np.float64]
CONFIDENCE = 0.95
BLOCK = 1_000_000  # values resampled at once (repetitions are drawn block by block)


def draws(rs: np.random.RandomState, runs: int, strata: tuple[int, ...], reps: int
          ) -> Iterator[npt.NDArray[np.int64]]:
    """Blocks of repetitions × runs × strata: the run drawn for each place of each
    repetition, as rliable's StratifiedBootstrap draws them repetition after repetition."""
    size = runs * int(np.prod(strata))
    block = max(1, BLOCK // max(size, 1))
    for start in range(0, reps, block):
        yield rs.randint(0, runs, (min(block, reps - start), runs, *strata))


def interval(values: F64) -> tuple[F64, F64]:
    """arch's percentile interval (what rliable asks for) of each column of ``values``
    (repetitions down)."""
    alpha = (1.0 - CONFIDENCE) / 2
    low, high = np.percentile(values, [100 * alpha, 100 * (1.0 - alpha)], axis=0)
    return low, high


def iqm_bounds(n: int) -> tuple[int, int]:
    """The sorted positions [lo, hi) the interquartile mean of ``n`` values averages (scipy's
    ``trim_mean(values, 0.25)``, which rliable's IQM is)."""
    low = int(0.25 * n)
    return low, n - low


def counts(index: npt.NDArray[np.int64], runs: int) -> F64:
    """How many times each run is drawn: ``index`` (repetitions × draws × strata) as counts
    (repetitions × strata × runs)."""
    reps, _, strata = index.shape
    offsets = (np.arange(reps)[:, None] * strata + np.arange(strata)[None, :]) * runs
    flat = (index.transpose(0, 2, 1) + offsets[:, :, None]).ravel()
    return np.bincount(flat, minlength=reps * strata * runs).reshape(reps, strata, runs) \
        .astype(np.float64)

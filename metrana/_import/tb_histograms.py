"""TensorBoard's two histogram forms as :class:`metrana.Histogram`: bins, counts and stats.

TensorBoard writes a histogram either as the legacy ``HistogramProto`` (what
``torch.utils.tensorboard.SummaryWriter.add_histogram`` and TF1 write) or as a tensor of the
histograms plugin (TF2's ``tf.summary.histogram``). The mapping, chosen to keep what the file
holds rather than what TensorBoard redraws:

- **Legacy proto** (``bucket_limit`` = each bucket's right edge, ``bucket`` = its count; bucket
  *i* holds the values in ``(bucket_limit[i-1], bucket_limit[i]]``): the edges are the bucket
  limits as written. The first bucket has no left limit: when it is empty (torch always writes
  it empty, as a marker of where the values start) it is dropped; when it holds values its left
  edge is the proto's ``min`` (the smallest value binned). A last limit that is not a real
  number (TF's catch-all bucket up to ``DBL_MAX``) is replaced by the proto's ``max``. The
  proto's ``min``, ``max``, ``sum``, ``sum_squares`` are kept as the histogram's stats.
- **Plugin tensor** (``[k, 3]``: left edge, right edge, count): the edges are the lefts and
  the last right; a tensor of one bucket of zero width (all values equal) is widened by 0.5 on
  each side, as :meth:`metrana.Histogram.from_values` does. Whole counts are counts; weighted
  (fractional) counts are kept as densities. No stats (the tensor holds none).

metrana keeps at most 512 bins a histogram; TensorBoard's default bins (torch's ``'tensorflow'``
bins) give ~600 buckets, most of them empty. Runs of empty buckets are merged into one first,
which loses nothing (the counts and every non-empty bucket's edges stay as written); only if
more than 512 are left are neighbouring buckets summed pairwise, and the importer says so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .._values import MAX_BINS, Histogram

__all__ = ["from_buckets", "from_proto"]

_DBL_MAX = np.finfo(np.float64).max


def from_proto(histo: Any) -> tuple[Histogram, bool]:
    """A legacy ``HistogramProto`` as a Histogram; and whether bins had to be summed pairwise.

    Raises:
        ValueError: the proto holds nothing a histogram can be made of (no buckets, limits
            not increasing, non-finite numbers).
    """
    limits = np.array(histo.bucket_limit, dtype=np.float64)
    counts = np.array(histo.bucket, dtype=np.float64)
    if len(limits) == 0 or len(limits) != len(counts):
        raise ValueError(f"{len(counts)} buckets and {len(limits)} bucket limits")
    low, high = float(histo.min), float(histo.max)
    if not math.isfinite(limits[-1]) or limits[-1] >= _DBL_MAX:
        if len(limits) > 1 and math.isfinite(high) and high > limits[-2]:
            limits[-1] = high
        else:
            limits, counts = limits[:-1], counts[:-1]  # an empty catch-all bucket
    if counts[0] == 0:
        edges, counts = limits, counts[1:]
    else:
        left = low if math.isfinite(low) and low < limits[0] else np.nextafter(limits[0], -np.inf)
        edges = np.concatenate([[left], limits])
    if len(counts) == 0:
        raise ValueError("no bucket holds a value")
    stats = (low, high, float(histo.sum), float(histo.sum_squares))
    stats_ok = all(math.isfinite(x) for x in stats) and low <= high and float(histo.num) > 0
    return _histogram(edges, counts, stats if stats_ok else None)


def from_buckets(tensor: npt.NDArray[Any]) -> tuple[Histogram, bool]:
    """A histograms-plugin tensor (``[k, 3]``: left, right, count) as a Histogram; and whether
    bins had to be summed pairwise.

    Raises:
        ValueError: not a ``[k, 3]`` tensor of finite numbers with at least one bucket.
    """
    buckets = np.asarray(tensor, dtype=np.float64)
    if buckets.ndim != 2 or buckets.shape[1] != 3 or buckets.shape[0] == 0:
        raise ValueError(f"a histogram tensor is [k, 3] with k >= 1, got {list(buckets.shape)}")
    lefts, rights, counts = buckets[:, 0], buckets[:, 1], buckets[:, 2]
    if len(lefts) == 1 and lefts[0] == rights[0]:
        return _histogram(np.array([lefts[0] - 0.5, rights[0] + 0.5]), counts, None)
    return _histogram(np.append(lefts, rights[-1]), counts, None)


def _histogram(edges: npt.NDArray[np.float64], counts: npt.NDArray[np.float64],
               stats: tuple[float, float, float, float] | None) -> tuple[Histogram, bool]:
    if not (np.all(np.isfinite(edges)) and np.all(np.isfinite(counts))):
        raise ValueError("a histogram with NaN or infinite edges or counts")
    edges, counts = _merge_empty(edges, counts)
    coarsened = False
    while len(counts) > MAX_BINS:
        edges, counts = _pairs(edges, counts)
        coarsened = True
    if np.all(counts == np.floor(counts)):
        return Histogram(edges, counts=counts.astype(np.int64), stats=stats), coarsened
    return Histogram(edges, densities=counts, stats=stats), coarsened


def _merge_empty(edges: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
                 ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Each run of empty buckets as one empty bucket (the same values, fewer bins)."""
    empty = counts == 0
    repeat = np.zeros(len(counts), dtype=bool)
    repeat[1:] = empty[1:] & empty[:-1]  # an empty bucket right after an empty one
    keep_edge = np.ones(len(edges), dtype=bool)
    keep_edge[1:-1] = ~repeat[1:]  # the edge between two empty buckets goes
    return edges[keep_edge], counts[~repeat]


def _pairs(edges: npt.NDArray[np.float64], counts: npt.NDArray[np.float64]
           ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Neighbouring buckets summed two by two (a last odd bucket stays as it is)."""
    if len(counts) % 2:
        counts = np.append(counts, 0.0)
        edges = np.append(edges, np.nan)
    summed = counts.reshape(-1, 2).sum(axis=1)
    new_edges = edges[::2]
    if np.isnan(new_edges[-1]):  # the padding: the last real edge closes the last bucket
        new_edges[-1] = edges[-2]
    return new_edges, summed

"""TensorBoard's histogram forms as metrana Histograms: the cases torch does not write (TF1's
catch-all buckets, a first bucket that holds values, more than 512 buckets, bad protos)."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.compat.proto.summary_pb2 import HistogramProto

from metrana._import.tb_histograms import from_buckets, from_proto

DBL_MAX = float(np.finfo(np.float64).max)


def test_tf1_buckets_take_min_and_max_for_their_open_ends() -> None:
    """TF1's histogram.cc: the first bucket holds values below its limit (its left edge is the
    proto's min); the last limit is DBL_MAX (its right edge is the proto's max)."""
    values = np.array([-3.0, -2.5, 0.5, 1.0, 7.0])
    proto = HistogramProto(min=-3.0, max=7.0, num=5, sum=float(values.sum()),
                           sum_squares=float(values @ values),
                           bucket_limit=[-2.0, 0.0, 1.0, DBL_MAX], bucket=[2, 0, 2, 1])
    histogram, coarsened = from_proto(proto)
    assert histogram.edges.tolist() == [-3.0, -2.0, 0.0, 1.0, 7.0]
    assert histogram.counts is not None and histogram.counts.tolist() == [2, 0, 2, 1]
    assert histogram.stats == (-3.0, 7.0, float(values.sum()), float(values @ values))
    assert not coarsened


def test_more_than_512_buckets_are_summed_in_pairs_after_merging_empty_runs() -> None:
    """Runs of empty buckets become one bucket (nothing lost); 700 non-empty buckets are then
    summed two by two into 350, the count kept."""
    limits = np.arange(1, 1402, dtype=np.float64)  # 1401 limits: bucket 0 empty, then 1400
    counts = np.zeros(1401)
    counts[1:701] = 1  # 700 buckets holding one value each
    proto = HistogramProto(min=0.5, max=700.5, num=700, sum=0, sum_squares=0,
                           bucket_limit=limits.tolist(), bucket=counts.tolist())
    histogram, coarsened = from_proto(proto)
    assert coarsened
    assert histogram.counts is not None and int(histogram.counts.sum()) == 700
    assert histogram.bins == 351  # 350 pairs of ones, then the one run of 700 empty buckets
    assert histogram.counts.tolist() == [2] * 350 + [0]
    assert histogram.edges[0] == 1.0 and histogram.edges[-1] == 1401.0


def test_a_tensor_of_one_zero_width_bucket_is_widened() -> None:
    """TF2 writes all-equal values as one bucket [v, v]: it gets the width from_values gives."""
    histogram, _ = from_buckets(np.array([[2.0, 2.0, 5.0]]))
    assert histogram.edges.tolist() == [1.5, 2.5]
    assert histogram.counts is not None and histogram.counts.tolist() == [5]


@pytest.mark.parametrize(("make", "message"), [
    (lambda: from_proto(HistogramProto(bucket_limit=[1.0], bucket=[])),
     "0 buckets and 1 bucket limits"),
    (lambda: from_proto(HistogramProto(bucket_limit=[1.0], bucket=[0])),
     "no bucket holds a value"),
    (lambda: from_buckets(np.zeros((0, 3))), "a histogram tensor is [k, 3] with k >= 1, got [0, 3]"),
    (lambda: from_buckets(np.array([[0.0, np.nan, 1.0]])),
     "a histogram with NaN or infinite edges or counts"),
])
def test_what_cannot_be_a_histogram_says_why(make: object, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        make()  # type: ignore[operator]
    assert message in str(raised.value)

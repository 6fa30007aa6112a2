"""Points lists read by whole columns: the server's ingest fast path.

A client's request is ~10,000 points, each a small JSON object; converting them one by one
(the exact converters of :mod:`.validate`) cost ~4 µs a point, most of the server's time. Here
a points list in the form clients actually send — every point a dict with the canonical JSON
names, steps as decimal strings, RFC 3339 UTC timestamps with 0/3/6/9 fraction digits and
``Z``, finite numbers for values — is checked and converted with a few C-level passes (``map``,
one regular expression over the joined steps, numpy over the timestamps' bytes). Anything else
(another spelling protobuf also accepts, a value out of range, a malformed point) returns None
and the exact converter takes the list, so what is accepted, and every error message, stays
exactly what :mod:`.validate` (and so ``json_format.ParseDict``) says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from operator import methodcaller
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["PointColumns", "read_points"]

MIN_POINTS = 64  # below this the exact converters are as quick
_DIGITS = re.compile(r"\d{1,19}(?:,\d{1,19})*\Z")  # < 10**19 < 2**64: always a valid uint64
_STD_KEYS = frozenset({"step", "timestamp", "floatValue"})
_RL_KEYS = frozenset({"majorStep", "minorStep", "timestamp", "floatValue"})
_GET = {name: methodcaller("get", name)
        for name in ("step", "majorStep", "minorStep", "timestamp", "floatValue")}
_MONTH_DAYS = np.array([0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)


class PointColumns(Sequence[dict[str, Any]]):
    """A points list, as columns. Reads like the exact converters' list of dicts (keyed by
    proto field names), so generic code and tests see no difference."""

    def __init__(self, rl: bool, steps: npt.NDArray[np.uint64], majors: npt.NDArray[np.uint64],
                 timestamps: npt.NDArray[np.int64], values: npt.NDArray[np.float64]) -> None:
        self.rl = rl
        self.steps = steps  # the minor step for RL points
        self.majors = majors
        self.timestamps = timestamps
        self.values = values

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        point: dict[str, Any] = {"timestamp": int(self.timestamps[index]),
                                 "float_value": float(self.values[index])}
        if self.rl:
            point["major_step"] = int(self.majors[index])
            point["minor_step"] = int(self.steps[index])
        else:
            point["step"] = int(self.steps[index])
        return point

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def _uint64s(texts: list[Any]) -> npt.NDArray[np.uint64] | None:
    """Decimal strings (None: absent, i.e. 0) as uint64, or None if any is not plainly one."""
    if None in texts:
        texts = ["0" if t is None else t for t in texts]
    joined = ",".join(texts) if set(map(type, texts)) == {str} else ""
    if not _DIGITS.match(joined):
        return None
    return np.fromstring(joined, dtype=np.uint64, sep=",")


def _digits(raw: npt.NDArray[np.uint8], start: int, width: int) -> npt.NDArray[np.int64]:
    out = np.zeros(raw.shape[0], dtype=np.int64)
    for column in range(start, start + width):
        out = out * 10 + (raw[:, column].astype(np.int64) - 48)
    return out


def _timestamps_ns(texts: list[Any]) -> npt.NDArray[np.int64] | None:
    """RFC 3339 ``YYYY-MM-DDTHH:MM:SS[.fff|.ffffff|.fffffffff]Z`` strings as Unix ns, or None
    if any is absent, spelt otherwise, out of 1678-2261, or not a real date and time."""
    if set(map(type, texts)) != {str}:
        return None
    try:
        raw = np.array(texts, dtype="S30")  # ASCII only; a longer string does not fit
    except (UnicodeEncodeError, ValueError):
        return None
    if max(map(len, texts)) > 30:
        return None
    n = raw.shape[0]
    b = raw.view(np.uint8).reshape(n, 30)
    lengths = np.count_nonzero(b, axis=1)
    if not np.isin(lengths, (20, 24, 27, 30)).all():
        return None
    digit_columns = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
    digits = b[:, digit_columns]
    if not (((digits >= 48) & (digits <= 57)).all() and (b[:, 4] == 45).all()
            and (b[:, 7] == 45).all() and (b[:, 10] == 84).all() and (b[:, 13] == 58).all()
            and (b[:, 16] == 58).all()):
        return None
    rows = np.arange(n)
    if not (b[rows, lengths - 1] == 90).all():  # "Z"
        return None
    fractional = lengths > 20
    if not (b[fractional, 19] == 46).all():  # "."
        return None
    year, month, day = _digits(b, 0, 4), _digits(b, 5, 2), _digits(b, 8, 2)
    hour, minute, second = _digits(b, 11, 2), _digits(b, 14, 2), _digits(b, 17, 2)
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in = _MONTH_DAYS[np.where(month_ok, month, 0)] - ((month == 2) & ~leap)
    if not (month_ok.all() and ((day >= 1) & (day <= days_in)).all() and (hour < 24).all()
            and (minute < 60).all() and (second < 60).all()
            and ((year >= 1678) & (year <= 2261)).all()):
        return None
    # Days from the civil date (proleptic Gregorian), vectorized.
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = era * 146097 + doe - 719468
    seconds = days * 86400 + hour * 3600 + minute * 60 + second
    nanos = np.zeros(n, dtype=np.int64)
    for width in (3, 6, 9):
        rows_w = lengths == 20 + 1 + width
        if rows_w.any():
            fraction = b[rows_w, 20:20 + width]
            if not ((fraction >= 48) & (fraction <= 57)).all():
                return None
            value = np.zeros(int(rows_w.sum()), dtype=np.int64)
            for column in range(width):
                value = value * 10 + (fraction[:, column].astype(np.int64) - 48)
            nanos[rows_w] = value * 10 ** (9 - width)
    return seconds * 1_000_000_000 + nanos  # type: ignore[no-any-return]


def _floats(values: list[Any]) -> npt.NDArray[np.float64] | None:
    """Finite JSON numbers (not bools, not strings) as float64, or None."""
    kinds = set(map(type, values))
    if not kinds <= {float, int}:
        return None
    try:
        array = np.array(values, dtype=np.float64)
    except (OverflowError, ValueError):
        return None
    # A non-finite JSON number is an error protobuf words its own way (NaN is spelt "NaN").
    return array if np.isfinite(array).all() else None


def read_points(points: Any, rl: bool) -> PointColumns | None:
    """The columns of a points list in the usual form, or None (the exact path decides)."""
    if type(points) is not list or len(points) < MIN_POINTS or set(map(type, points)) != {dict}:
        return None
    keys = _RL_KEYS if rl else _STD_KEYS
    if not set().union(*points) <= keys:
        return None
    timestamps = _timestamps_ns(list(map(_GET["timestamp"], points)))
    values = _floats(list(map(_GET["floatValue"], points)))
    if timestamps is None or values is None:
        return None
    if rl:
        majors = _uint64s(list(map(_GET["majorStep"], points)))
        steps = _uint64s(list(map(_GET["minorStep"], points)))
        if majors is None or steps is None:
            return None
    else:
        steps = _uint64s(list(map(_GET["step"], points)))
        if steps is None:
            return None
        majors = steps
    return PointColumns(rl, steps, majors, timestamps, values)

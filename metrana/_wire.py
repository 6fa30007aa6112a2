"""Encoding requests in the protobuf canonical JSON mapping, without building messages.

``MessageToDict`` costs ~15 µs a point; these functions write the same JSON directly from our
records (a few string operations a point). ``tests/client/test_wire.py`` proves on randomized
inputs that ``json_format.ParseDict`` reads our bytes into the same message the protobuf path
produces.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ._items import MAJOR, STEP, TS, VALUE, Points
from ._series import SeriesKey
from ._values import HISTOGRAM, SCATTER3D, value_json

__all__ = ["JSON_HEADERS", "encode_update", "is_ok", "json_number", "number_from_json",
           "series_header", "timestamp_json", "wire_group"]

JSON_HEADERS = {"Content-Type": "application/json"}


def wire_group(key: SeriesKey) -> int:
    """Where a series goes in a ``RunUpdate``: 0 ``series``, 1 ``rlSeries``, 2
    ``histogramSeries``, 3 ``scatterSeries``."""
    if key.rl:
        return 1
    return 0 if not key.kind else (2 if key.kind == HISTOGRAM else 3)


def is_ok(status: int) -> bool:
    """Any 2xx is an acceptance (the body carries nothing the client needs)."""
    return 200 <= status < 300

_ORDERING = ("ORDERING_MODE_RELATIVE_ORDERED", "ORDERING_MODE_ABSOLUTE_UNORDERED")
_SECOND_PREFIX: dict[int, str] = {}


def _prefix(seconds: int) -> str:
    """``"YYYY-MM-DDTHH:MM:SS`` (with the opening quote) for whole Unix seconds, cached."""
    prefix = _SECOND_PREFIX.get(seconds)
    if prefix is None:
        if len(_SECOND_PREFIX) > 4096:
            _SECOND_PREFIX.clear()
        prefix = _SECOND_PREFIX[seconds] = time.strftime('"%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))
    return prefix


def _fraction(nanos: int) -> str:
    """0, 3, 6 or 9 fractional digits, whichever is shortest and exact."""
    if nanos % 1000:
        return ".%09d" % nanos
    if nanos % 1_000_000:
        return ".%06d" % (nanos // 1000)
    if nanos:
        return ".%03d" % (nanos // 1_000_000)
    return ""


def timestamp_json(ns: int) -> str:
    """A quoted RFC 3339 UTC string with 0, 3, 6 or 9 fractional digits (shortest exact)."""
    seconds, nanos = divmod(ns, 1_000_000_000)
    return _prefix(seconds) + _fraction(nanos) + 'Z"'


NAN, INFINITY, NEG_INFINITY = "NaN", "Infinity", "-Infinity"  # the JSON mapping's spelling


def json_number(value: float) -> float | str:
    """A float as the protobuf JSON mapping writes it: NaN and ±inf are strings."""
    if value - value == 0.0:
        return value
    return NAN if value != value else (INFINITY if value > 0 else NEG_INFINITY)


def number_from_json(value: float | str) -> float:
    """The inverse of :func:`json_number`."""
    if isinstance(value, str):
        return {NAN: math.nan, INFINITY: math.inf, NEG_INFINITY: -math.inf}[value]
    return float(value)


def _float(value: float) -> str:
    if value - value == 0.0:
        return repr(value)
    return f'"{json_number(value)}"'


def _s(text: str) -> str:
    return json.dumps(text)


def series_header(key: SeriesKey, manual: bool) -> str:
    """The JSON of a series update up to and including ``"points":[``."""
    if key.kind:
        return _valued_header(key)
    parts = ['{"metricName":', _s(key.name)]
    if key.rl:
        if key.env_id:
            parts += [',"environmentId":', _s(key.env_id)]
        if key.episode is not None:
            parts += [',"episode":"', str(key.episode), '"']
    parts += [',"scale":', _s(key.scale)]
    if key.labels:
        parts += [',"labels":', json.dumps(dict(key.labels), sort_keys=True)]
    parts += [',"ordering":"', _ORDERING[1 if manual else 0], '","points":[']
    return "".join(parts)


def _valued_header(key: SeriesKey) -> str:
    """A ``HistogramSeriesUpdate`` or ``ScatterSeriesUpdate`` up to ``"points":[``: no
    ordering (their steps are absolute), a scatter's axis titles as metadata labels."""
    parts = ['{"metricName":', _s(key.name), ',"scale":', _s(key.scale)]
    if key.labels:
        parts += [',"labels":', json.dumps(dict(key.labels), sort_keys=True)]
    if key.meta:
        parts += [',"metadataLabels":', json.dumps(dict(key.meta), sort_keys=True)]
    if key.kind == SCATTER3D:
        parts.append(',"is3d":true')
    parts.append(',"points":[')
    return "".join(parts)


def _valued_points(spans: Sequence[tuple[int | None, Sequence[Any]]]) -> bytes:
    """Histogram or scatter points: one JSON object each (:func:`metrana._values.value_json`)."""
    out = []
    for first, items in spans:
        for index, (_, given, _major, value, ts) in enumerate(items):
            out.append(value_json(value, given if first is None else first + index, ts))
    return b",".join(out)


def _point_slow(rl: bool, step: int, major: int | None, value: float, prefix: str,
                nanos: int) -> str:
    stamp = '"timestamp":%s%sZ","floatValue":%s}' % (prefix, _fraction(nanos), _float(value))
    if rl:
        head = '{"majorStep":"%d",' % major if major else "{"
        return head + ('"minorStep":"%d",' % step if step else "") + stamp
    return ('{"step":"%d",' % step if step else "{") + stamp


def _points_slow(spans: Sequence[tuple[int | None, Sequence[Any]]], rl: bool) -> str:
    """Points of one series, one %-format each: for short spans and unusual timestamps."""
    out: list[str] = []
    append = out.append
    second_start = second_end = 0  # [start, end) of the whole second `prefix` spells
    prefix = ""
    for first, items in spans:
        step = first if first is not None else 0
        for _, given, major, value, ts in items:  # the layout of metrana._items
            if not second_start <= ts < second_end:
                seconds = ts // 1_000_000_000
                second_start = seconds * 1_000_000_000
                second_end = second_start + 1_000_000_000
                prefix = _prefix(seconds)
            nanos = ts - second_start
            if first is None:
                step = given
            if not nanos % 1000 or value - value != 0.0 or not step or (rl and not major):
                append(_point_slow(rl, step, major, value, prefix, nanos))
            elif rl:
                append('{"majorStep":"%d","minorStep":"%d","timestamp":%s.%09dZ","floatValue":%r}'
                       % (major, step, prefix, nanos, value))
            else:
                append('{"step":"%d","timestamp":%s.%09dZ","floatValue":%r}'
                       % (step, prefix, nanos, value))
            step += 1
    return ",".join(out)


_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_STEP, _MAJOR, _VALUE, _TS = (itemgetter(i) for i in (STEP, MAJOR, VALUE, TS))
_FAST_MIN = 32  # below this many points the per-point path is cheaper
_TS_LOW, _TS_HIGH = 10**18, 10**19  # timestamps with 10-digit seconds (2001 to 2286)
# An RL point's pieces: constants, and empty places for its own digits (steps, the second's
# prefix, nanoseconds, value) that _points fills in.
_RL_PIECES: list[bytes] = [b'{"majorStep":"', b"", b'","minorStep":"', b"", b'","timestamp":',
                           b"", b"", b'Z","floatValue":', b"", b"},"]


def _numbers(array: npt.NDArray[Any]) -> list[bytes]:
    """Each number's JSON digits, formatted by orjson (ryu: shortest exact, like repr)."""
    return orjson.dumps(array, option=_NUMPY)[1:-1].split(b",")


def _points(spans: Sequence[tuple[int | None, Sequence[Any]]], rl: bool) -> bytes:
    """Points of one series. ``spans``: ``(first step or None, items)``; an item is an inbox
    item (:mod:`metrana._items`) whose step is used when ``first`` is None.

    Python's per-point formatting (``repr`` of a float alone costs ~0.5 µs) was most of the
    engine's time, so the common case is columnar: the columns are read in C, numbers are
    formatted by orjson over whole numpy columns, and each run of points sharing a second is
    one ``%`` over a repeated template. Points the template cannot spell — step or major step
    0 (omitted on the wire), a timestamp whose fraction shortens (``…000`` ns), a value that
    is not finite — and short or unusual spans take :func:`_points_slow`.
    """
    total = sum(len(items) for _, items in spans)
    if total < _FAST_MIN:
        return _points_slow(spans, rl).encode()
    step_parts, major_parts, value_parts, ts_parts = [], [], [], []
    for first, items in spans:
        n = len(items)  # columns read in C: map(itemgetter) into np.fromiter
        if isinstance(items, Points) and first is not None and not rl:
            flat = items.flat  # a column's points: already the series' own, in order
            step_parts.append(np.arange(first, first + n, dtype=np.int64))
            value_parts.append(np.array(flat[0::2], np.float64))
            ts_parts.append(np.array(flat[1::2], np.int64))
            continue
        step_parts.append(np.fromiter(map(_STEP, items), np.int64, n) if first is None
                          else np.arange(first, first + n, dtype=np.int64))
        value_parts.append(np.fromiter(map(_VALUE, items), np.float64, n))
        ts_parts.append(np.fromiter(map(_TS, items), np.int64, n))
        if rl:
            major_parts.append(np.fromiter(map(_MAJOR, items), np.int64, n))
    ts = np.concatenate(ts_parts) if len(ts_parts) > 1 else ts_parts[0]
    if ts.min() < _TS_LOW or ts.max() >= _TS_HIGH:
        return _points_slow(spans, rl).encode()
    steps = np.concatenate(step_parts) if len(step_parts) > 1 else step_parts[0]
    values = np.concatenate(value_parts) if len(value_parts) > 1 else value_parts[0]
    majors = (np.concatenate(major_parts) if len(major_parts) > 1 else major_parts[0]) \
        if rl else None
    seconds = ts // 1_000_000_000
    nanos = ts - seconds * 1_000_000_000
    special = (nanos % 1000 == 0) | ~np.isfinite(values) | (steps == 0)
    if majors is not None:
        special |= majors == 0
    # Every point as the same run of pieces (constants and its own digits), filled by slice
    # assignment and joined once: no per-point Python code. A point the pieces cannot spell
    # (see above) is written whole in place of its pieces.
    if majors is None:
        return _standard(steps, values, seconds, nanos, special)
    return _rl(steps, majors, values, seconds, nanos, special)


def _rl(steps: npt.NDArray[Any], majors: npt.NDArray[Any], values: npt.NDArray[Any],
        seconds: npt.NDArray[Any], nanos: npt.NDArray[Any], special: npt.NDArray[Any]) -> bytes:
    """RL points as :data:`_RL_PIECES` (see :func:`_standard` for the standard ones)."""
    total = len(steps)
    width = len(_RL_PIECES)
    parts = _RL_PIECES * total
    parts[1::width] = _numbers(majors)
    parts[3::width] = _numbers(steps)
    # 10 digits "1xxxxxxxxx": drop the 1 of each (no other digit follows a comma) = %09d.
    parts[width - 4::width] = orjson.dumps(nanos + 1_000_000_000, option=_NUMPY)[2:-1] \
        .replace(b",1", b",").split(b",")
    parts[width - 2::width] = _numbers(values)
    # The second's prefix changes rarely: one slice assignment per second.
    changes = np.flatnonzero(seconds[1:] != seconds[:-1]) + 1
    bounds = [0, *changes.tolist(), total]
    for a, b in zip(bounds, bounds[1:], strict=False):
        parts[a * width + width - 5:b * width:width] = \
            [_prefix(int(seconds[a])).encode() + b"."] * (b - a)
    for i in np.flatnonzero(special).tolist():
        parts[i * width:(i + 1) * width] = [b""] * (width - 1) + [
            _point_slow(True, int(steps[i]), int(majors[i]), float(values[i]),
                        _prefix(int(seconds[i])), int(nanos[i])).encode()
            + b","]
    return b"".join(parts)[:-1]


# A standard point's six pieces: its step, '","timestamp":' with its second, its nanoseconds,
# a constant, its value, and what closes it and opens the next point ('},{"step":"').
_STD_PIECES: list[bytes] = [b"", b"", b"", b'Z","floatValue":', b"", b'},{"step":"']


def _standard(steps: npt.NDArray[Any], values: npt.NDArray[Any], seconds: npt.NDArray[Any],
              nanos: npt.NDArray[Any], special: npt.NDArray[Any]) -> bytes:
    """Standard points as :data:`_STD_PIECES` (six pieces a point rather than eight: the
    constants around a point's value and its neighbour's step are one piece each). A point
    the pieces cannot spell is its whole text in its first piece; the piece before it then
    only closes the point before (``},``, or ``,`` after another such point)."""
    total = len(steps)
    parts = _STD_PIECES * total
    parts[0::6] = _numbers(steps)
    # 10 digits "1xxxxxxxxx": drop the 1 of each (no other digit follows a comma) = %09d.
    parts[2::6] = orjson.dumps(nanos + 1_000_000_000, option=_NUMPY)[2:-1] \
        .replace(b",1", b",").split(b",")
    parts[4::6] = _numbers(values)
    changes = np.flatnonzero(seconds[1:] != seconds[:-1]) + 1  # one assignment per second
    bounds = [0, *changes.tolist(), total]
    for a, b in zip(bounds, bounds[1:], strict=False):
        stamp = b'","timestamp":' + _prefix(int(seconds[a])).encode() + b"."
        parts[a * 6 + 1:b * 6:6] = [stamp] * (b - a)
    lead = b'{"step":"'
    for i in np.flatnonzero(special).tolist():
        parts[i * 6:i * 6 + 6] = [
            _point_slow(False, int(steps[i]), None, float(values[i]), _prefix(int(seconds[i])),
                        int(nanos[i])).encode(), b"", b"", b"", b"", b',{"step":"']
        if i:
            parts[i * 6 - 1] = b"," if special[i - 1] else b"},"
        else:
            lead = b""
    parts[-1] = b"" if special[-1] else b"}"
    parts.insert(0, lead)
    return b"".join(parts)


def encode_update(
    session_id: int,
    workspace: str,
    project: str,
    run_name: str,
    series: Iterable[tuple[str, int, Sequence[tuple[int | None, Sequence[Any]]]]],
    attributes: Sequence[dict[str, Any]] = (),
    *,
    close_run: bool = False,
) -> bytes:
    """An ``UpdateRunsRequest`` for one run.

    ``series`` yields ``(header, group, spans)`` (see :func:`_points`): ``group`` is
    :func:`wire_group` of the series (False/0 standard, True/1 RL, then histograms and
    scatter). For RL series the step is the minor step and the item's major is the major step.
    """
    groups: tuple[list[bytes], ...] = ([], [], [], [])
    for header, group, spans in series:
        points = _points(spans, group == 1) if group < 2 else _valued_points(spans)
        groups[group].append(header.encode() + points + b"]}")
    std, rl, histograms, scatters = groups
    run = ['{"workspace":', _s(workspace), ',"project":', _s(project), ',"runName":', _s(run_name)]
    tail: list[str] = []
    if attributes:
        tail += [',"attributes":', json.dumps(list(attributes))]
    if close_run:
        tail.append(',"closeRun":{}')
    tail.append("}")
    head = '{"sessionId":"%d","runUpdates":[' % session_id if session_id else '{"runUpdates":['
    body = [(head + "".join(run)).encode()]
    if std:
        body += [b',"series":[', b",".join(std), b"]"]
    if histograms:
        body += [b',"histogramSeries":[', b",".join(histograms), b"]"]
    if scatters:
        body += [b',"scatterSeries":[', b",".join(scatters), b"]"]
    if rl:
        body += [b',"rlSeries":[', b",".join(rl), b"]"]
    body.append(("".join(tail) + "]}").encode())
    return b"".join(body)

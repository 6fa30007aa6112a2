"""Our hand-written JSON is exactly what the protobuf JSON mapping means (wire contract)."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from google.protobuf import json_format

from metrana._items import Points
from metrana._series import SeriesKey
from metrana._wire import encode_update, series_header, timestamp_json
from tests.protobuf_v06 import api_pb2

VALUES = [0.0, -0.0, 1.0, 0.1, -2.5e-308, 1e16, 1.7976931348623157e308, math.nan, math.inf,
          -math.inf, 123456789.123456789]


def expected_message(session_id: int, run: tuple[str, str, str], series_list: list[Any],
                     attributes: list[dict[str, Any]]) -> Any:
    """The same request built the slow, obviously-correct way with protobuf messages."""
    msg = api_pb2.UpdateRunsRequest(session_id=session_id)
    ru = msg.run_updates.add(workspace=run[0], project=run[1], run_name=run[2])
    for key, manual, points in series_list:
        ordering = 2 if manual else 1
        if key.rl:
            s = ru.rl_series.add(metric_name=key.name, scale=key.scale,
                                 environment_id=key.env_id, ordering=ordering)
            if key.episode is not None:
                s.episode = key.episode
            s.labels.update(dict(key.labels))
            for minor, major, value, ts in points:
                p = s.points.add(major_step=major, minor_step=minor, float_value=value)
                p.timestamp.FromNanoseconds(ts)
        else:
            s = ru.series.add(metric_name=key.name, scale=key.scale, ordering=ordering)
            s.labels.update(dict(key.labels))
            for step, _major, value, ts in points:
                p = s.points.add(step=step, float_value=value)
                p.timestamp.FromNanoseconds(ts)
    for attribute in attributes:
        json_format.ParseDict(attribute, ru.attributes.add())
    return msg


def as_spans(points, rng: random.Random, rl: bool):  # type: ignore[no-untyped-def]
    """Points as the engine hands them over: items with their own steps, spans numbered from a
    first step (when the steps are consecutive), or — a standard series numbered from a first
    step — a column's Points."""
    items = [(None, step, major, value, ts) for step, major, value, ts in points]
    steps = [p[0] for p in points]
    consecutive = steps == list(range(steps[0], steps[0] + len(steps)))
    if consecutive and not rl and rng.random() < 0.4:
        return [(steps[0], Points(0, [x for _, _, value, ts in points for x in (value, ts)]))]
    if consecutive and rng.random() < 0.5:
        return [(steps[0], items)]
    return [(None, items)]


def random_key(rng: random.Random) -> SeriesKey:
    labels = tuple(sorted({f"k{rng.randrange(4)}": rng.choice(["v", "ü", 'q"uote', "a\\b", ""])
                           for _ in range(rng.randrange(3))}.items()))
    name = rng.choice(["loss", "eval/acc", "ü-metric", 'we"ird'])
    if rng.random() < 0.5:
        return SeriesKey(False, name, rng.choice(["ML_STEP", "EPISODE"]), labels)
    return SeriesKey(True, name, rng.choice(["EPISODE", "ENVIRONMENT_STEP"]), labels,
                     rng.choice(["", "env-1", "7"]), rng.choice([None, 0, 3, 2**62]))


def random_ts(rng: random.Random) -> int:
    seconds = rng.randrange(0, 253_402_300_799)
    nanos = rng.choice([0, rng.randrange(1000) * 10**6, rng.randrange(10**6) * 1000,
                        rng.randrange(10**9)])
    return seconds * 10**9 + nanos


def test_encoded_updates_parse_into_the_protobuf_built_message() -> None:
    """Randomized series, labels, steps, values and timestamps: ParseDict(ours) == protobuf."""
    rng = random.Random(2026)
    for _ in range(400):
        series_list = []
        for _ in range(rng.randrange(1, 4)):
            key = random_key(rng)
            manual = rng.random() < 0.3
            first = rng.choice([0, 1, rng.randrange(2**62)])
            points = [(rng.choice([first + i, rng.randrange(2**63)]),
                       rng.choice([0, rng.randrange(2**40)]), rng.choice(VALUES), random_ts(rng))
                      for i in range(rng.randrange(1, 5))]
            series_list.append((key, manual, points))
        attributes = [{"path": "config/x", "intValue": str(rng.randrange(-(2**63), 2**63))}] \
            if rng.random() < 0.2 else []
        session_id = rng.choice([1, rng.randrange(2**64)])
        run = ("ws", "proj ü", "run-1")
        body = encode_update(session_id, *run,
                             [(series_header(k, m), k.rl, as_spans(p, rng, k.rl)) for k, m, p in series_list],
                             attributes)
        parsed = json_format.ParseDict(json.loads(body), api_pb2.UpdateRunsRequest(),
                                       ignore_unknown_fields=False)
        assert parsed == expected_message(session_id, run, series_list, attributes), body[:500]


def realistic_ts(rng: random.Random, start: int) -> list[int]:
    """Timestamps as time.time_ns() gives them: increasing, a few µs apart, crossing seconds,
    now and then a whole number of µs, ms or s."""
    out, t = [], start
    for _ in range(rng.randrange(32, 300)):
        t += rng.choice([rng.randrange(1, 5000), rng.randrange(1, 3) * 10**8])
        r = rng.random()
        out.append(t - t % 1000 if r < 0.05 else (t - t % 10**9 if r < 0.07 else t))
    return out


def test_long_spans_take_the_columnar_path_and_parse_the_same() -> None:
    """Spans of 32-300 points (the engine's usual batch), standard and RL, consecutive or given
    steps, with step 0, major step 0, NaN/inf, whole-µs/ms/s timestamps and second boundaries
    among them: ParseDict(ours) == the protobuf-built message."""
    rng = random.Random(14)
    for case in range(150):
        key = random_key(rng)
        manual = rng.random() < 0.3
        stamps = realistic_ts(rng, rng.choice([1_795_000_000 * 10**9, 10**18, 2**63 - 10**12,
                                               1_700_000_000 * 10**9]))
        if case % 10 == 9:  # an unusual clock: before 2001 (9-digit seconds)
            stamps = [t % (10**17) for t in stamps]
        first = rng.choice([0, 1, 5, 2**40])
        points = []
        for i, t in enumerate(stamps):
            value = rng.choice(VALUES) if rng.random() < 0.05 else rng.uniform(-1e6, 1e6)
            major = rng.choice([0, 7, rng.randrange(2**40)]) if key.rl else None
            points.append((first + i, major if key.rl else 0, value, t))
        spans = as_spans(points, rng, key.rl)
        body = encode_update(3, "ws", "p", "r", [(series_header(key, manual), key.rl, spans)])
        parsed = json_format.ParseDict(json.loads(body), api_pb2.UpdateRunsRequest(),
                                       ignore_unknown_fields=False)
        assert parsed == expected_message(3, ("ws", "p", "r"), [(key, manual, points)], []), \
            body[:300]


def test_canonical_json_details() -> None:
    """step 0 omitted, episode 0 sent, 0.0 sent, shortest exact fraction digits, NaN spelt."""
    key = SeriesKey(True, "r", "ENVIRONMENT_STEP", (), "", 0)
    body = json.loads(encode_update(5, "w", "p", "r", [
        (series_header(key, False), True, [(0, [(key, None, 0, 0.0, 1_500_000_000)])])]))
    series = body["runUpdates"][0]["rlSeries"][0]
    assert series["episode"] == "0"
    assert series["points"] == [{"timestamp": "1970-01-01T00:00:01.500Z", "floatValue": 0.0}]
    assert timestamp_json(1_000_000_000) == '"1970-01-01T00:00:01Z"'
    assert timestamp_json(1_000_001_000) == '"1970-01-01T00:00:01.000001Z"'
    assert timestamp_json(1_000_000_001) == '"1970-01-01T00:00:01.000000001Z"'
    std = json.loads(encode_update(5, "w", "p", "r", [(series_header(
        SeriesKey(False, "l", "ML_STEP", ()), True), False, [(None, [(None, 3, None, math.nan, 0)])])]))
    assert std["runUpdates"][0]["series"][0]["points"][0] == {
        "step": "3", "timestamp": "1970-01-01T00:00:00Z", "floatValue": "NaN"}
    assert std["runUpdates"][0]["series"][0]["ordering"] == "ORDERING_MODE_ABSOLUTE_UNORDERED"


def test_points_the_fast_path_cannot_spell_next_to_each_other_and_at_the_ends() -> None:
    """Whole-second timestamps and NaN (written point by point) first, last, in pairs and
    alternating with ordinary points in one long standard series: ParseDict(ours) == protobuf."""
    key = SeriesKey(False, "loss", "ML_STEP", ())
    base = 1_795_000_000 * 10**9 + 123_457
    odd = {0, 1, 5, 6, 7, 10, 12, 14, 39}  # the series has 40 points; 39 is the last
    points = [(i + 1, 0, math.nan if i % 2 else 0.5 * i,
               base - base % 10**9 + 10**9 * i if i in odd else base + 1_001 * i)
              for i in range(40)]
    as_column: list[tuple[int | None, Any]] = [
        (1, Points(0, [x for _, _, v, t in points for x in (v, t)]))]
    as_items: list[tuple[int | None, Any]] = [
        (None, [(0, s, None, v, t) for s, _, v, t in points])]
    for spans in (as_column, as_items):
        body = encode_update(3, "ws", "p", "r", [(series_header(key, False), False, spans)])
        parsed = json_format.ParseDict(json.loads(body), api_pb2.UpdateRunsRequest(),
                                       ignore_unknown_fields=False)
        assert parsed == expected_message(3, ("ws", "p", "r"), [(key, False, points)], [])

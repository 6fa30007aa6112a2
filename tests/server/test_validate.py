"""The fast validator accepts and rejects exactly the bodies ``json_format.ParseDict`` does."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest
from google.protobuf import json_format

from metrana.server.validate import ValidationError, compile_message, parse_timestamp_ns
from tests.protobuf_v06 import api_pb2, updates_pb2

parse_update = compile_message(api_pb2.UpdateRunsRequest.DESCRIPTOR)
parse_create = compile_message(api_pb2.CreateRunRequest.DESCRIPTOR)


def protobuf_accepts(body: Any, message_type: Any) -> bool:
    try:
        json_format.ParseDict(body, message_type(), ignore_unknown_fields=False)
    except (json_format.ParseError, TypeError, ValueError, AttributeError):
        return False
    return True


def ours_accepts(body: Any, parser: Any) -> bool:
    try:
        parser(copy.deepcopy(body), "body")
    except ValidationError:
        return False
    return True


def random_timestamp(rng: random.Random) -> str:
    seconds = rng.randrange(0, 4_000_000_000)
    nanos = rng.choice([0, rng.randrange(10**9), rng.randrange(1000) * 10**6])
    from google.protobuf.timestamp_pb2 import Timestamp

    return str(Timestamp(seconds=seconds, nanos=nanos).ToJsonString())


def random_labels(rng: random.Random) -> dict[str, str]:
    return {f"k{rng.randrange(5)}": rng.choice(["a", "", "ü", "x y"]) for _ in range(rng.randrange(3))}


def random_update_message(rng: random.Random) -> api_pb2.UpdateRunsRequest:
    msg = api_pb2.UpdateRunsRequest(session_id=rng.randrange(2**64))
    for _ in range(rng.randrange(1, 3)):
        ru = msg.run_updates.add(workspace="ws", project="p", run_name=f"r{rng.randrange(9)}")
        for _ in range(rng.randrange(3)):
            s = ru.series.add(metric_name=f"m{rng.randrange(9)}", scale=rng.choice(
                ["ML_STEP", "EPISODE", "ENVIRONMENT_STEP"]), ordering=rng.randrange(3))
            s.labels.update(random_labels(rng))
            for _ in range(rng.randrange(4)):
                p = s.points.add(step=rng.choice([0, rng.randrange(2**63)]))
                if rng.random() < 0.8:
                    p.timestamp.FromJsonString(random_timestamp(rng))
                if rng.random() < 0.9:
                    p.float_value = rng.choice(
                        [0.0, -0.0, 1.5, math.nan, math.inf, -math.inf, rng.uniform(-1e300, 1e300)]
                    )
        for _ in range(rng.randrange(3)):
            s = ru.rl_series.add(metric_name="reward", environment_id=rng.choice(["", "env-1"]),
                                 scale=rng.choice(["EPISODE", "ENVIRONMENT_STEP"]), ordering=1)
            if rng.random() < 0.5:
                s.episode = rng.randrange(3)
            s.labels.update(random_labels(rng))
            for _ in range(rng.randrange(4)):
                p = s.points.add(major_step=rng.randrange(100), minor_step=rng.randrange(100))
                p.timestamp.FromJsonString(random_timestamp(rng))
                p.float_value = rng.uniform(-5, 5)
        for _ in range(rng.randrange(3)):
            a = ru.attributes.add(path=f"config/k{rng.randrange(9)}")
            kind = rng.randrange(5)
            if kind == 0:
                a.bool_value = rng.random() < 0.5
            elif kind == 1:
                a.string_value = "s"
            elif kind == 2:
                a.float_value = rng.uniform(-1, 1)
            elif kind == 3:
                a.int_value = rng.randrange(-(2**63), 2**63)
            else:
                a.string_set_value.values.extend(["a", "b"])
    return msg


JUNK = [None, True, False, 0, -1, 1.5, 2**64, -(2**63) - 1, 1e20, "", " 1", "1 ", "1_0", "+3",
        "0x10", "1.0", "1e3", "NaN", "nan", "Infinity", "-Infinity", "inf", "abc", [], [1], {},
        {"x": 1}, "2026-11-26T09:49:01Z", "2026-11-26T09:49:01.1234567891Z",
        "2026-11-26t09:49:01Z", "2026-11-26T09:49:01+01:00", "2026-13-26T09:49:01Z",
        "ORDERING_MODE_RELATIVE_ORDERED", "BOGUS", 7, 2**31]


def leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(leaves(v, (*path, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(leaves(v, (*path, i)))
    return out


def mutate(body: Any, rng: random.Random) -> Any:
    body = copy.deepcopy(body)
    paths = [p for p in leaves(body) if p]
    if not paths:
        return body
    path = rng.choice(paths)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    action = rng.random()
    if action < 0.7:
        parent[path[-1]] = copy.deepcopy(rng.choice(JUNK))
    elif action < 0.85 and isinstance(parent, dict):
        parent[rng.choice(["bogusField", "step", "run_name", "float_value", "labels"])] = (
            copy.deepcopy(rng.choice(JUNK)))
    elif isinstance(parent, dict):
        del parent[path[-1]]
    return body


def test_randomized_valid_bodies_are_accepted_and_read_identically() -> None:
    """Every body MessageToDict produces is accepted, with the same values protobuf reads."""
    rng = random.Random(1234)
    for _ in range(300):
        msg = random_update_message(rng)
        body = json_format.MessageToDict(msg)
        ours = parse_update(body, "body")
        assert protobuf_accepts(body, api_pb2.UpdateRunsRequest)
        assert ours.get("session_id", 0) == msg.session_id
        for ru, our_ru in zip(msg.run_updates, ours.get("run_updates", []), strict=True):
            for s, our_s in zip(ru.series, our_ru.get("series", []), strict=True):
                assert our_s.get("labels", {}) == dict(s.labels)
                for p, our_p in zip(s.points, our_s.get("points", []), strict=True):
                    assert our_p.get("step", 0) == p.step
                    if p.HasField("timestamp"):
                        assert our_p["timestamp"] == p.timestamp.ToNanoseconds()
                    if p.HasField("float_value"):
                        got = our_p["float_value"]
                        assert got == p.float_value or (math.isnan(got) and math.isnan(p.float_value))
            for a, our_a in zip(ru.attributes, our_ru.get("attributes", []), strict=True):
                assert our_a["path"] == a.path


def test_randomly_corrupted_bodies_get_the_same_verdict_as_protobuf() -> None:
    """Mutated bodies (junk values, unknown or duplicate fields, removals) match ParseDict."""
    rng = random.Random(99)
    checked = rejected = 0
    for _ in range(400):
        body = json_format.MessageToDict(random_update_message(rng))
        for _ in range(5):
            bad = mutate(body, rng)
            expected = protobuf_accepts(copy.deepcopy(bad), api_pb2.UpdateRunsRequest)
            assert ours_accepts(bad, parse_update) == expected, json.dumps(bad, default=str)[:2000]
            checked += 1
            rejected += not expected
    assert rejected > checked // 4  # the corpus really exercises rejection


MALFORMED = [
    {"runUpdates": {}},
    {"runUpdates": [None]},
    {"runUpdates": [{"series": [{"points": [{"step": True}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"step": "-1"}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"step": str(2**64)}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"step": 1.5}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"floatValue": "nan"}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"floatValue": float("nan")}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"floatValue": "1.5x"}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"timestamp": 5}]}]}]},
    {"runUpdates": [{"series": [{"points": [{"timestamp": "2026-11-26 09:49:01Z"}]}]}]},
    {"runUpdates": [{"series": [{"labels": {"a": 1}}]}]},
    {"runUpdates": [{"series": [{"labels": ["a"]}]}]},
    {"runUpdates": [{"series": [{"ordering": "SIDEWAYS"}]}]},
    {"runUpdates": [{"attributes": [{"path": "a", "boolValue": True, "stringValue": "x"}]}]},
    {"runUpdates": [{"attributes": [{"path": "a", "intValue": "1", "int_value": 2}]}]},
    {"runUpdates": [{"metricName": "loss"}]},
    {"sessionId": "abc"},
    {"session_id": -1},
    {"extra": 1},
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_corpus_gets_the_same_verdict_as_protobuf(body: Any) -> None:
    """Hand-picked tricky bodies: our verdict equals ParseDict's."""
    assert ours_accepts(body, parse_update) == protobuf_accepts(
        copy.deepcopy(body), api_pb2.UpdateRunsRequest
    )


def test_create_run_bodies_match_protobuf() -> None:
    """CreateRunRequest validation, including aggregation rules, matches ParseDict."""
    rng = random.Random(5)
    good = {
        "run": {"workspace": "ws", "project": "p", "runName": "r", "experiment": "e"},
        "createProjectIfMissing": True,
        "aggregationRules": [{"metricName": "reward", "sourceScale": "EPISODE",
                              "outputScale": "EPISODE", "fns": ["AGGREGATION_FN_MIN"],
                              "aggregateOverLabels": ["environment_id"],
                              "outputMetricName": "reward/final", "outputNameSuffix": "/x"}],
    }
    assert ours_accepts(good, parse_create) and protobuf_accepts(good, api_pb2.CreateRunRequest)
    for _ in range(500):
        bad = mutate(good, rng)
        assert ours_accepts(bad, parse_create) == protobuf_accepts(
            copy.deepcopy(bad), api_pb2.CreateRunRequest), bad


@pytest.mark.parametrize(
    "text",
    ["2026-11-26T09:49:01Z", "2026-11-26T09:49:01.5Z", "2026-11-26T09:49:01.123456789Z",
     "1970-01-01T00:00:00Z", "2026-11-26T09:49:01.5+02:30", "2026-1-2T3:4:5Z"],
)
def test_timestamp_fast_path_equals_protobuf(text: str) -> None:
    """Timestamps parse to the same nanoseconds as protobuf's own parser."""
    point = updates_pb2.Point()
    point.timestamp.FromJsonString(text)
    assert parse_timestamp_ns(text) == point.timestamp.ToNanoseconds()


def long_points_message(rng: random.Random) -> Any:
    """A request as clients send it: series of 64-300 points, standard and RL."""
    msg = api_pb2.UpdateRunsRequest(session_id=rng.randrange(2**64))
    ru = msg.run_updates.add(workspace="w", project="p", run_name="r")
    base = rng.choice([1_795_000_000, 1_000_000_000, 5_000_000_000])
    for rl in (False, True):
        for _ in range(rng.randrange(1, 3)):
            s = (ru.rl_series.add(metric_name="r", scale="EPISODE", environment_id="e", ordering=1)
                 if rl else ru.series.add(metric_name="m", scale="ML_STEP", ordering=1))
            first = rng.choice([0, 1, 10**12])
            for i in range(rng.randrange(64, 300)):
                p = (s.points.add(major_step=rng.choice([0, i, 2**40]), minor_step=first + i)
                     if rl else s.points.add(step=first + i))
                nanos = rng.choice([0, rng.randrange(1000) * 10**6, rng.randrange(10**6) * 1000,
                                    rng.randrange(10**9)])
                p.timestamp.seconds, p.timestamp.nanos = base + i // 50, nanos
                p.float_value = rng.choice([0.0, -0.0, 1.5, 2**70, rng.uniform(-1e300, 1e300),
                                            rng.uniform(-1, 1)])
    return msg


def points_of(parsed: Any) -> list[tuple[Any, ...]]:
    return [(p.get("step", 0), p.get("major_step", 0), p.get("minor_step", 0), p.get("timestamp"),
             p.get("float_value")) for ru in parsed["run_updates"]
            for kind in ("series", "rl_series") for s in ru.get(kind, []) for p in s["points"]]


def protobuf_points(msg: Any) -> list[tuple[Any, ...]]:
    return [(p.step if not rl else 0, p.major_step if rl else 0, p.minor_step if rl else 0,
             p.timestamp.ToNanoseconds(), p.float_value)
            for ru in msg.run_updates for rl, series in ((False, ru.series), (True, ru.rl_series))
            for s in series for p in s.points]


def test_points_lists_as_clients_send_them_are_read_by_columns_identically() -> None:
    """Long points lists in the canonical form take the columnar path (PointColumns) and read
    exactly what protobuf reads: steps, major/minor steps, timestamps to the ns, values."""
    from metrana.server.columnar import PointColumns

    rng = random.Random(77)
    for _ in range(60):
        msg = long_points_message(rng)
        body = json_format.MessageToDict(msg)
        parsed = parse_update(body, "body")
        lists = [s["points"] for ru in parsed["run_updates"] for kind in ("series", "rl_series")
                 for s in ru.get(kind, [])]
        assert lists and all(isinstance(points, PointColumns) for points in lists)
        assert points_of(parsed) == protobuf_points(msg)


ODD_POINTS = [{"step": 7}, {"step": "1e3"}, {"step": " 5"}, {"step": "-1"}, {"step": str(2**64)},
              {"step": "9" * 19}, {"timestamp": "2026-11-26T09:49:01.5Z"},
              {"timestamp": "2026-02-29T09:49:01Z"}, {"timestamp": "2024-02-29T09:49:01Z"},
              {"timestamp": "2026-11-26T09:49:60Z"}, {"timestamp": "0001-01-01T00:00:00Z"},
              {"timestamp": "2026-11-26T09:49:01.123456789+01:00"}, {"timestamp": "é"},
              {"floatValue": "NaN"}, {"floatValue": True}, {"floatValue": None}, {"floatValue": 1e400},
              {"float_value": 1.0}, {"bogus": 1}, {"timestamp": None}]


@pytest.mark.parametrize("odd", ODD_POINTS, ids=range(len(ODD_POINTS)))
def test_one_odd_point_in_a_long_list_gets_protobufs_verdict_and_values(odd: dict[str, Any]) -> None:
    """A long list with one point in another spelling (valid or not): the exact path decides,
    so the verdict — and, when valid, every value — is protobuf's."""
    msg = long_points_message(random.Random(5))
    body = json_format.MessageToDict(msg)
    points = body["runUpdates"][0]["series"][0]["points"]
    points[10] = {k: v for k, v in {**points[10], **odd}.items()
                  if not (k == "timestamp" and v is None)}  # a missing timestamp
    accepted = protobuf_accepts(copy.deepcopy(body), api_pb2.UpdateRunsRequest)
    assert ours_accepts(body, parse_update) == accepted
    if accepted:
        expected = json_format.ParseDict(copy.deepcopy(body), api_pb2.UpdateRunsRequest())
        got = points_of(parse_update(copy.deepcopy(body), "body"))
        want = protobuf_points(expected)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g[:4] == w[:4] or (g[3] is None and w[3] == 0 and g[:3] == w[:3])
            assert g[4] == w[4] or (g[4] is None and w[4] == 0.0) or (g[4] != g[4] and w[4] != w[4])


def point(**fields: Any) -> dict[str, Any]:
    return {"runUpdates": [{"series": [{"metricName": "m", "scale": "ML_STEP",
                                         "points": [fields]}]}]}


def attribute(**fields: Any) -> dict[str, Any]:
    return {"runUpdates": [{"attributes": [{"path": "config/x", **fields}]}]}


def f32(*values: Any) -> dict[str, Any]:
    return {"runUpdates": [{"series": [{"metricName": "m", "pointBatches": [
        {"valuesF32": list(values)}]}]}]}


# (body, accepted): each integer and float kind of the schema at and just past its bounds.
EDGES: list[tuple[dict[str, Any], bool]] = [
    (point(step=str(2**64 - 1)), True), (point(step=str(2**64)), False),
    (point(step=2**64 - 1), True), (point(step=0), True), (point(step=-1), False),
    (attribute(intValue=str(2**63 - 1)), True), (attribute(intValue=str(2**63)), False),
    (attribute(intValue=str(-(2**63))), True), (attribute(intValue=str(-(2**63) - 1)), False),
    (attribute(floatValue="abc"), False), (attribute(floatValue="1e5"), True),
    (attribute(floatValue="-Infinity"), True), (attribute(floatValue="Infinity"), True),
    (f32(1.5, -2.0), True), (f32(3.4028234663852886e38), True), (f32(3.5e38), False),
    (f32(-3.4028234663852886e38), True), (f32(-3.5e38), False),
    ({"runUpdates": [{"series": [{"ordering": 2**31 - 1}]}]}, True),
    ({"runUpdates": [{"series": [{"ordering": 2**31}]}]}, False),
    ({"runUpdates": [{"series": [{"ordering": -(2**31)}]}]}, True),
    ({"runUpdates": [{"series": [{"ordering": -(2**31) - 1}]}]}, False),
    ({"runUpdates": [{"series": [{"ordering": 42}]}]}, True),  # proto3 enums are open
    (point(timestamp="2026-11-26T09:49:01.55"), False),  # no zone
    (point(timestamp="2026-11-26T09:49:01.5Z"), True),
    (point(timestamp="2026-11-26T09:49:01.1234567891Z"), False),
]


@pytest.mark.parametrize(("body", "accepted"), EDGES, ids=range(len(EDGES)))
def test_bounds_of_every_number_kind_get_protobufs_verdict(body: dict[str, Any],
                                                           accepted: bool) -> None:
    assert protobuf_accepts(copy.deepcopy(body), api_pb2.UpdateRunsRequest) is accepted
    assert ours_accepts(body, parse_update) is accepted


def test_an_error_names_the_path_of_the_offending_value() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_update(point(step=str(2**64)), "body")
    assert str(raised.value) == (f"body.runUpdates[0].series[0].points[0].step: integer "
                                 f"{2**64} out of range")
    assert raised.value.reason == f"integer {2**64} out of range"
    with pytest.raises(ValidationError) as raised:
        parse_update({"runUpdates": [{"attributes": [{"path": "a", "floatValue": "abc"}]}]},
                     "body")
    assert str(raised.value) == ("body.runUpdates[0].attributes[0].floatValue: couldn't parse "
                                 "float 'abc'")
    assert str(ValidationError("bare")) == "bare"


def test_null_clears_a_field_given_earlier_under_its_other_name() -> None:
    """As in protobuf: ``null`` clears a field, also one set just before by its JSON name."""
    body = {"runUpdates": [{"series": [{"metricName": "m", "metric_name": None}]}]}
    msg = api_pb2.UpdateRunsRequest()
    json_format.ParseDict(copy.deepcopy(body), msg)
    assert msg.run_updates[0].series[0].metric_name == ""
    assert parse_update(body, "body") == {"run_updates": [{"series": [{}]}]}


def edge_message() -> Any:
    """A proto2 message with a field of every integer kind, a closed enum and a map with bool
    keys — kinds our schema does not use today, which the validator compiles all the same."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="metrana_edge.proto", package="metrana_edge",
                                              syntax="proto2")
    file.enum_type.add(name="Color").value.extend(
        [descriptor_pb2.EnumValueDescriptorProto(name="RED", number=0),
         descriptor_pb2.EnumValueDescriptorProto(name="GREEN", number=1)])
    edge = file.message_type.add(name="Edge")
    kinds = [F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64, F.TYPE_UINT64, F.TYPE_FIXED64,
             F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32, F.TYPE_UINT32, F.TYPE_FIXED32]
    for number, kind in enumerate(kinds, 1):
        edge.field.add(name=f"f{number}", number=number, type=kind, label=F.LABEL_OPTIONAL)
    edge.field.add(name="color", number=20, type=F.TYPE_ENUM, type_name=".metrana_edge.Color",
                   label=F.LABEL_OPTIONAL)
    entry = edge.nested_type.add(name="FlagsEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    entry.field.add(name="value", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    edge.field.add(name="flags", number=21, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                   type_name=".metrana_edge.Edge.FlagsEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("metrana_edge.Edge"))


def test_every_integer_kind_closed_enums_and_bool_map_keys_match_protobuf() -> None:
    edge = edge_message()
    parse = compile_message(edge.DESCRIPTOR)
    bounds = {1: (-(2**63), 2**63 - 1), 2: (-(2**63), 2**63 - 1), 3: (-(2**63), 2**63 - 1),
              4: (0, 2**64 - 1), 5: (0, 2**64 - 1), 6: (-(2**31), 2**31 - 1),
              7: (-(2**31), 2**31 - 1), 8: (-(2**31), 2**31 - 1), 9: (0, 2**32 - 1),
              10: (0, 2**32 - 1)}
    cases: list[tuple[dict[str, Any], bool]] = []
    for number, (lo, hi) in bounds.items():
        cases += [({f"f{number}": lo}, True), ({f"f{number}": hi}, True),
                  ({f"f{number}": str(hi)}, True), ({f"f{number}": lo - 1}, False),
                  ({f"f{number}": hi + 1}, False), ({f"f{number}": str(hi + 1)}, False)]
    cases += [({"color": "GREEN"}, True), ({"color": 1}, True), ({"color": 7}, False),
              ({"flags": {"true": "a", "false": "b"}}, True), ({"flags": {"yes": "a"}}, False),
              ({"flags": {"True": "a"}}, False)]
    for body, accepted in cases:
        assert protobuf_accepts(copy.deepcopy(body), edge) is accepted, body
        assert ours_accepts(body, parse) is accepted, body
    assert parse({"f4": str(2**64 - 1), "flags": {"true": "a", "false": "b"}, "color": "GREEN"},
                 "b") == {"f4": 2**64 - 1, "flags": {True: "a", False: "b"}, "color": 1}

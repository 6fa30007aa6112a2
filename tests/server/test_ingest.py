"""Ingest: what the server refuses rather than dropping (422 naming the path), what identifies
a point (series, session, step: the first write of it is kept, nothing is stored twice), and
how a request becomes per-series columns.

The HTTP tests run a real ``metrana serve`` in the test's trio loop and read back what it
stored; the parse tests call :func:`metrana.server.ingest.parse_update` on validated bodies.
"""

from __future__ import annotations

import math
from typing import Any

import httpx
import numpy as np
import pytest

from metrana.server.errors import Unprocessable
from metrana.server.ingest import INT64_MAX, parse_update, signed_session
from metrana.server.validate import compile_message
from tests.protobuf_v06 import api_pb2

_validate = compile_message(api_pb2.UpdateRunsRequest.DESCRIPTOR)
SESSION = "1234567890123"


def parsed(body: dict[str, Any]) -> Any:
    return parse_update(_validate(body, "body"))


def update(*, session: str = SESSION, **fields: Any) -> dict[str, Any]:
    return {"sessionId": session, "runUpdates": [
        {"workspace": "ws", "project": "proj", "runName": "run-001", **fields}]}


def series(points: list[dict[str, Any]], name: str = "loss", **extra: Any) -> dict[str, Any]:
    return {"metricName": name, "scale": "ML_STEP", "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
            "points": points, **extra}


def point(step: int, value: float, ts: int = 0) -> dict[str, Any]:
    return {"step": str(step), "floatValue": value,
            "timestamp": f"2026-11-27T10:00:{ts:02d}Z"}


# ------------------------------------------------------------------------- parsing

def test_session_ids_are_stored_as_the_same_64_bits() -> None:
    assert [signed_session(s) for s in (0, 1, 2**63 - 1, 2**63, 2**64 - 1)] == [
        0, 1, 2**63 - 1, -(2**63), -1]
    session, _ = parsed(update(session=str(2**64 - 1)))
    assert session == -1


def test_a_request_becomes_one_entry_per_series_with_its_columns_in_order() -> None:
    """Entries of one series (same identity and ordering) are merged, in request order;
    a different ordering, label, episode or kind is another series."""
    body = update(
        series=[series([point(0, 1.0), point(1, 2.0)]),
                series([point(1, 9.0)], labels={"split": "val"}),
                series([point(2, 3.0)]),
                series([point(7, 7.0)], ordering="ORDERING_MODE_ABSOLUTE_UNORDERED")],
        rlSeries=[{"metricName": "r", "scale": "EPISODE", "environmentId": "e",
                   "points": [{"majorStep": "10", "minorStep": "2", "floatValue": 0.5}]},
                  {"metricName": "r", "scale": "EPISODE", "environmentId": "e", "episode": "0",
                   "points": [{"majorStep": "11"}]}],
        attributes=[{"path": "config/lr", "floatValue": 0.1}], closeRun={})
    session, (run,) = parsed(body)
    assert session == int(SESSION)
    assert (str(run.key), run.attributes, run.close) == (
        "ws/proj/run-001", [{"path": "config/lr", "float_value": 0.1}], True)
    described = [(s.kind, s.metric_name, s.labels, s.environment_id, s.episode, s.relative,
                  s.points.x.tolist(), s.points.minor.tolist()) for s in run.series]
    assert described == [
        ("standard", "loss", "{}", "", None, True, [0, 1, 2], [0, 0, 0]),
        ("standard", "loss", '{"split":"val"}', "", None, True, [1], [0]),
        ("standard", "loss", "{}", "", None, False, [7], [0]),
        ("rl", "r", "{}", "e", None, False, [10], [2]),  # no ordering: absolute steps
        ("rl", "r", "{}", "e", 0, False, [11], [0]),  # episode 0 is not "no episode"
    ]
    assert [s.points.v.tolist() for s in run.series[:4]] == [[1.0, 2.0, 3.0], [9.0], [7.0],
                                                             [0.5]]
    rl_missing = run.series[4]
    assert rl_missing.points.missing.tolist() == [True] and math.isnan(rl_missing.points.v[0])
    assert run.series[0].points.missing.tolist() == [False, False, False]
    assert run.series[0].points.t.tolist() == [1_795_773_600_000_000_000] * 3
    assert [s.path for s in run.series] == ["runUpdates[0].series[0]", "runUpdates[0].series[1]",
                                           "runUpdates[0].series[3]", "runUpdates[0].rlSeries[0]",
                                           "runUpdates[0].rlSeries[1]"]
    assert parsed(update())[1][0].close is False


def test_labels_are_one_canonical_identity_whatever_their_order() -> None:
    _, (run,) = parsed(update(series=[series([point(0, 1.0)], labels={"b": "2", "a": "ü"}),
                                      series([point(1, 2.0)], labels={"a": "ü", "b": "2"})]))
    (only,) = run.series
    assert only.labels == '{"a":"ü","b":"2"}' and only.points.x.tolist() == [0, 1]


@pytest.mark.parametrize(("body", "says"), [
    (update(series=[series([point(0, 1.0), point(2**63, 2.0)])]),
     f"runUpdates[0].series[0].points[1].step: {2**63} is outside what this server stores "
     "(0 to 2**63-1)"),
    (update(rlSeries=[{"metricName": "r", "scale": "EPISODE",
                       "points": [{"majorStep": str(2**64 - 1)}]}]),
     f"runUpdates[0].rlSeries[0].points[0].majorStep: {2**64 - 1} is outside"),
    (update(rlSeries=[{"metricName": "r", "scale": "EPISODE",
                       "points": [{"majorStep": "1"}, {"majorStep": "1",
                                                       "minorStep": str(2**63)}]}]),
     f"runUpdates[0].rlSeries[0].points[1].minorStep: {2**63} is outside"),
    (update(rlSeries=[{"metricName": "r", "scale": "EPISODE", "episode": str(2**63),
                       "points": []}]),
     f"runUpdates[0].rlSeries[0].episode: {2**63} is larger than this server stores"),
    (update(series=[series([], name="")]), "runUpdates[0].series[0].metricName must not be empty"),
    (update(series=[series([], scale="")]), "runUpdates[0].series[0].scale must not be empty"),
    (update(rlSeries=[{"metricName": "r", "points": []}]),
     "runUpdates[0].rlSeries[0].scale must not be empty"),
])
def test_what_cannot_be_stored_is_refused_naming_where_it_is(body: dict[str, Any],
                                                            says: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        parsed(body)
    assert str(refused.value).startswith(says)


def test_step_and_timestamp_bounds_are_exactly_int64() -> None:
    """0 and 2**63-1 are steps; timestamps cover int64 nanoseconds (1677-09-21 to 2262-04-11),
    both ends included."""
    _, (run,) = parsed(update(series=[series([{"step": str(INT64_MAX), "floatValue": 1.0}]),
                                      series([{"step": "0"}], name="b")]))
    assert [s.points.x.tolist() for s in run.series] == [[INT64_MAX], [0]]
    for ts, ok in (("1677-09-21T00:12:43.145224192Z", True), ("1677-09-21T00:12:43.145224191Z",
                                                              False),
                   ("2262-04-11T23:47:16.854775807Z", True), ("2262-04-11T23:47:16.854775808Z",
                                                              False)):
        body = update(series=[series([{"step": "0", "timestamp": ts}])])
        if ok:
            (s,) = parsed(body)[1][0].series
            assert s.points.t.dtype == np.int64
        else:
            with pytest.raises(Unprocessable, match=r"points\[0\]\.timestamp: -?\d+ is outside "
                                                    r"what this server stores \(int64 nano"):
                parsed(body)


UNSUPPORTED = [
    ("envAttrUpdates", [{"environmentId": "e", "attributes": [{"path": "x", "intValue": "1"}]}],
     "runUpdates[0].env_attr_updates is valid but not stored by this server"),
    ("seriesDeclarations", [{"metricName": "d", "declarationId": "1"}],
     "runUpdates[0].series_declarations is valid but not stored by this server"),
    ("streamingSeries", [{"seriesId": "1", "pointBatches": [{"values": [1.0]}]}],
     "runUpdates[0].streaming_series is valid but not stored by this server"),
    ("streamingRlSeries", [{"seriesId": "1", "rlStepBatches": [{"values": [1.0]}]}],
     "runUpdates[0].streaming_rl_series is valid but not stored by this server"),
    ("series", [series([point(0, 1.0)]),
                series([], floatPoints={"steps": ["1"], "values": [2.0]})],
     "runUpdates[0].series[1]: floatPoints/point_batches are not stored by this server"),
    ("series", [series([], pointBatches=[{"firstStep": "0", "values": [1.0, 2.0]}])],
     "runUpdates[0].series[0]: floatPoints/point_batches are not stored by this server"),
    ("rlSeries", [{"metricName": "r", "scale": "EPISODE",
                   "floatPoints": {"majorSteps": ["1"], "values": [1.0]}}],
     "runUpdates[0].rl_series[0]: floatPoints/rl_step_batches are not stored by this server"),
    ("rlSeries", [{"metricName": "r", "scale": "EPISODE",
                   "rlStepBatches": [{"rlStep": "1", "values": [1.0]}]}],
     "runUpdates[0].rl_series[0]: floatPoints/rl_step_batches are not stored by this server"),
]


@pytest.mark.parametrize(("field", "value", "says"), UNSUPPORTED,
                         ids=[f"{f}-{i}" for i, (f, _, _) in enumerate(UNSUPPORTED)])
def test_valid_protobuf_the_server_does_not_store_is_refused_not_dropped(
        field: str, value: Any, says: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        parsed(update(**{field: value}))
    assert str(refused.value).startswith(says)


def test_empty_parts_of_the_schema_are_no_data_and_are_accepted() -> None:
    """An empty list (or an empty message) carries nothing that could be lost."""
    _, (run,) = parsed(update(histogramSeries=[], series=[series([point(0, 1.0)],
                                                                 floatPoints={})]))
    assert [s.points.n for s in run.series] == [1]


# ------------------------------------------------------------------ over HTTP, read back


async def stored(client: httpx.AsyncClient) -> dict[str, list[tuple[int, int, Any]]]:
    """(step, minor step, value) of every stored point, by series name."""
    detail = (await client.get("/api/runs/ws/proj/run-001")).json()
    out = {}
    for s in detail["series"]:
        points = (await client.get(f"/api/runs/ws/proj/run-001/series/{s['id']}/points")
                  ).json()["points"]
        out[s["metric_name"]] = [(p["step"], p.get("minor_step", 0), p["value"]) for p in points]
    return out


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/runs:update", json=body)


@pytest.mark.parametrize(("field", "value", "says"), UNSUPPORTED[::3],
                         ids=[f for f, _, _ in UNSUPPORTED[::3]])
async def test_a_request_with_a_part_the_server_does_not_store_is_422_and_stores_nothing(
        client: httpx.AsyncClient, field: str, value: Any, says: str) -> None:
    body = update(**{field: value})
    if field != "series":
        body["runUpdates"][0]["series"] = [series([point(0, 1.0)], name="kept-out")]
    response = await post(client, body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(says)
    assert await stored(client) == {}


async def test_the_first_write_of_a_step_is_kept(client: httpx.AsyncClient) -> None:
    """(series, session, step) identifies a point: a later request with the same step (a
    retry whose first answer was lost, a replay) leaves the stored value alone, and within
    one request the first of two equal steps wins; new steps are added in step order."""
    assert (await post(client, update(series=[series([point(0, 1.0), point(1, 2.0)])]))
            ).status_code == 200
    assert (await post(client, update(series=[series([point(1, 99.0), point(2, 3.0),
                                                     point(2, 98.0), point(4, 5.0),
                                                     point(3, 4.0)])]))).status_code == 200
    assert (await post(client, update(series=[series([point(4, 97.0), point(0, 96.0)])]))
            ).status_code == 200
    assert await stored(client) == {"loss": [(0, 0, 1.0), (1, 0, 2.0), (2, 0, 3.0),
                                             (3, 0, 4.0), (4, 0, 5.0)]}


async def test_the_first_write_of_an_rl_step_is_kept(client: httpx.AsyncClient) -> None:
    def rl(points: list[tuple[int, int, float]]) -> dict[str, Any]:
        return {"metricName": "r", "scale": "ENVIRONMENT_STEP", "environmentId": "e",
                "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
                "points": [{"majorStep": str(a), "minorStep": str(b), "floatValue": v}
                           for a, b, v in points]}

    await post(client, update(rlSeries=[rl([(10, 0, 1.0), (10, 1, 2.0)])]))
    await post(client, update(rlSeries=[rl([(10, 1, 9.0), (11, 2, 3.0), (11, 2, 8.0)])]))
    assert await stored(client) == {"r": [(10, 0, 1.0), (10, 1, 2.0), (11, 2, 3.0)]}


async def test_each_session_appends_and_keeps_its_own_points(client: httpx.AsyncClient) -> None:
    """Two sessions logging steps 0.. of one series: the second's go after the first's; a
    replay of the first session afterwards changes nothing."""
    first = update(series=[series([point(i, float(i)) for i in range(3)])])
    await post(client, first)
    await post(client, update(session="42", series=[series([point(i, 10.0 + i)
                                                            for i in range(2)])]))
    await post(client, first)
    assert [(s, v) for s, _, v in (await stored(client))["loss"]] == [
        (0, 0.0), (1, 1.0), (2, 2.0), (3, 10.0), (4, 11.0)]


# ------------------------------------------------------- long lists (read by columns), defaults

def long(rl: bool, n: int = 70, **odd: Any) -> list[dict[str, Any]]:
    """``n`` points in the form clients send (long enough for the columnar reader)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        p: dict[str, Any] = {"timestamp": f"2026-11-27T10:00:{i % 60:02d}.500Z",
                             "floatValue": i / 4}
        if rl:
            p.update(majorStep=str(100 + i // 10), minorStep=str(i))
        else:
            p.update(step=str(i))
        out.append(p)
    out[-1].update(odd)
    return out


def test_long_lists_are_read_by_columns_into_the_same_steps() -> None:
    """A long standard list: x is the step; a long RL list: x is the major step and minor
    the minor step — as for short lists."""
    from metrana.server.columnar import read_points

    assert read_points(long(False), False) is not None  # the columnar path is taken
    rl_series = {"metricName": "r", "scale": "EPISODE", "environmentId": "e", "points": long(True)}
    _, (run,) = parsed(update(series=[series(long(False))], rlSeries=[rl_series]))
    std, rl = run.series
    assert std.points.x.tolist() == list(range(70)) and std.points.minor.tolist() == [0] * 70
    assert rl.points.x.tolist() == [100 + i // 10 for i in range(70)]
    assert rl.points.minor.tolist() == list(range(70))
    assert std.points.v.tolist() == [i / 4 for i in range(70)] == rl.points.v.tolist()
    assert std.points.t.tolist()[:2] == [1_795_773_600_500_000_000, 1_795_773_601_500_000_000]
    _, (run,) = parsed(update(series=[series(long(False, step=str(INT64_MAX)))]))
    assert run.series[0].points.x.tolist()[-2:] == [68, INT64_MAX]  # the last step there is


@pytest.mark.parametrize(("rl", "odd", "says"), [
    (False, {"step": str(2**63)}, f"series[0].points[69].step: {2**63} is outside"),
    (True, {"minorStep": str(2**63)}, f"rlSeries[0].points[69].minorStep: {2**63} is outside"),
    (True, {"majorStep": str(2**63)}, f"rlSeries[0].points[69].majorStep: {2**63} is outside"),
])
def test_a_step_past_int64_in_a_long_list_is_refused_naming_it(rl: bool, odd: dict[str, Any],
                                                               says: str) -> None:
    body = (update(rlSeries=[{"metricName": "r", "scale": "EPISODE", "points": long(True, **odd)}])
            if rl else update(series=[series(long(False, **odd))]))
    with pytest.raises(Unprocessable) as raised:
        parsed(body)
    assert str(raised.value) == f"runUpdates[0].{says} what this server stores (0 to 2**63-1)"


def test_a_timestamp_out_of_range_after_good_ones_is_refused_naming_it() -> None:
    body = update(series=[series([point(0, 1.0), {"step": "1",
                                                 "timestamp": "0001-01-01T00:00:00Z"}])])
    with pytest.raises(Unprocessable, match=r"^runUpdates\[0\]\.series\[0\]\.points\[1\]\."
                                            r"timestamp: -62135596800000000000 is outside"):
        parsed(body)


def test_omitted_fields_are_protobufs_defaults() -> None:
    """proto3 JSON leaves zeros out: a missing step, minor step, timestamp or session id is 0
    (a missing value is no value)."""
    body = {"runUpdates": [{"workspace": "ws", "project": "proj", "runName": "r",
                            "series": [series([{}])],
                            "rlSeries": [{"metricName": "r", "scale": "EPISODE",
                                          "points": [{"majorStep": "3"}, {}]}]}]}
    session, (run,) = parsed(body)
    std, rl = run.series
    assert session == 0
    assert (std.points.x.tolist(), std.points.minor.tolist(), std.points.t.tolist(),
            std.points.missing.tolist()) == ([0], [0], [0], [True])
    assert (rl.points.x.tolist(), rl.points.minor.tolist(), rl.points.t.tolist()) == (
        [3, 0], [0, 0], [0, 0])


def test_each_ordering_is_stored_by_its_name(tmp_path: Any) -> None:
    from metrana.server.store import Store

    store = Store(str(tmp_path / "s.sqlite3"))
    try:
        store.create_run({"run": {"workspace": "ws", "project": "proj", "run_name": "run-001"},
                          "create_project_if_missing": True})
        names = ["ORDERING_MODE_UNDEFINED", "ORDERING_MODE_RELATIVE_ORDERED",
                 "ORDERING_MODE_ABSOLUTE_UNORDERED", "ORDERING_MODE_ABSOLUTE_ORDERED"]
        store.update_runs(_validate(update(series=[series([point(0, 1.0)], name=f"m{i}",
                                                          ordering=name)
                                                   for i, name in enumerate(names)]), "body"))
        assert [s["ordering"] for s in store.get_run("ws", "proj", "run-001")["series"]] == names
    finally:
        store.close()

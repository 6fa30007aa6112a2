"""Histograms and point clouds on the server (both stores): refused as strictly as scalars
(422 naming the field, nothing of the request stored), a step sent again overwritten, the
series' summary from its last histogram, edges stored once, and a database from before
histograms upgraded in place."""

from __future__ import annotations

import math
import sqlite3
from typing import Any

import httpx
import numpy as np
import pytest

from metrana.server.store import Store
from metrana.server.store.schema import SCHEMA_VERSION
from metrana.server.store.values import decode_numbers, encode_numbers
from tests.server.test_store import _execute, create, update

SESSION = "77"


def body(**fields: Any) -> dict[str, Any]:
    return {"sessionId": SESSION, "runUpdates": [
        {"workspace": "ws", "project": "proj", "runName": "run-001", **fields}]}


def hist(*points: dict[str, Any], name: str = "h") -> dict[str, Any]:
    return {"metricName": name, "scale": "ML_STEP", "points": list(points)}


def hpoint(step: int, edges: list[Any], counts: list[int] | None = None, **extra: Any
           ) -> dict[str, Any]:
    point: dict[str, Any] = {"step": str(step), "timestampMillis": "1700000000000",
                             "binEdges": edges, **extra}
    if counts is not None:
        point["counts"] = [str(c) for c in counts]
    return point


def cloud(*points: dict[str, Any], name: str = "s", is3d: bool = False) -> dict[str, Any]:
    return {"metricName": name, "scale": "ML_STEP", "points": list(points), "is3d": is3d,
            "metadataLabels": {"x_title": "x"}}


REFUSED = [
    (hist(hpoint(0, [0, 1])), "histogramSeries[0].points[0]: exactly one of counts or "
                              "densities must be given"),
    (hist(hpoint(0, [0, 1], [1], densities=[0.5])), "histogramSeries[0].points[0]: exactly one"),
    (hist(hpoint(0, [0, 1, 2], [1])), "histogramSeries[0].points[0].binEdges: 3 edges for 1 "
                                      "bins"),
    (hist(hpoint(0, [0, 0], [1])), "histogramSeries[0].points[0].binEdges[1]: edges must be "
                                   "strictly increasing"),
    (hist(hpoint(0, [0, "Infinity"], [1])), "histogramSeries[0].points[0].binEdges[1]: inf is "
                                            "not finite"),
    (hist(hpoint(0, list(range(514)), [1] * 513)), "histogramSeries[0].points[0].counts: 513 "
                                                   "bins; this server stores 1 to 512"),
    (hist(hpoint(0, [0, 1], [2**63])), "histogramSeries[0].points[0].counts[0]: "
                                       "9223372036854775808 is larger than this server stores"),
    (hist(hpoint(0, [0, 1], densities=[-1.0])), "histogramSeries[0].points[0].densities[0]: "
                                                "must be >= 0"),
    (hist(hpoint(0, [0, 1], [1], stats={"min": "NaN"})), "histogramSeries[0].points[0].stats."
                                                         "min: nan is not finite"),
    (hist(hpoint(2**63, [0, 1], [1])), "histogramSeries[0].points[0].step: 9223372036854775808 "
                                       "is outside what this server stores"),
    (hist(hpoint(0, [0, 1], [1], timestampMillis=str(2**62))),
     "histogramSeries[0].points[0].timestampMillis: 4611686018427387904 is outside"),
    ({"metricName": "", "scale": "ML_STEP"}, "histogramSeries[0].metricName must not be empty"),
    (cloud({"step": "0", "xs": [1.0], "ys": []}), "scatterSeries[0].points[0].ys: 0 values for "
                                                  "1 xs"),
    (cloud({"step": "0", "xs": [1.0], "ys": [1.0]}, is3d=True),
     "scatterSeries[0].points[0].zs: 0 values for 1 xs"),
    (cloud({"step": "0", "xs": [1.0], "ys": [1.0], "zs": [1.0]}),
     "scatterSeries[0].points[0].zs: a 2-D scatter (is3d false) has no zs"),
    (cloud({"step": "0", "xs": ["NaN"], "ys": [1.0]}), "scatterSeries[0].points[0].xs[0]: nan "
                                                       "is not finite"),
    (cloud({"step": "0", "xs": [0.0] * 32769, "ys": [0.0] * 32769}),
     "scatterSeries[0].points[0].xs: 32769 points; this server stores at most 32768"),
]


@pytest.mark.parametrize(("series", "says"), REFUSED, ids=[s[:40] for _, s in REFUSED])
async def test_a_bad_histogram_or_cloud_is_422_naming_the_field_and_stores_nothing(
        client: httpx.AsyncClient, series: dict[str, Any], says: str) -> None:
    field = "histogramSeries" if "histogramSeries" in says else "scatterSeries"
    request = body(**{field: [series]}, series=[{
        "metricName": "kept-out", "scale": "ML_STEP", "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
        "points": [{"step": "0", "floatValue": 1.0}]}])
    response = await client.post("/v1/runs:update", json=request)
    assert response.status_code == 422, response.text
    assert response.json()["message"].startswith("runUpdates[0]." + says)
    run = (await client.get("/api/runs/ws/proj/run-001")).json()
    assert run["series"] == []
    assert (await client.get("/api/runs/ws/proj/run-001/values")).json() == {"series": []}


async def test_a_metric_keeps_one_kind_on_the_server(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/runs:update", json=body(
        histogramSeries=[hist(hpoint(0, [0, 1], [1]))], series=[{
            "metricName": "loss", "scale": "ML_STEP", "points": [{"floatValue": 1.0}]}]))
            ).status_code == 200
    for request, says in [
        (body(scatterSeries=[cloud({"xs": [1.0], "ys": [1.0]}, name="h")]),
         "metric 'h' holds histogram values in this run, not scatter"),
        (body(histogramSeries=[hist(hpoint(0, [0, 1], [1]), name="loss")]),
         "metric 'loss' holds scalar values in this run, not histogram"),
    ]:
        response = await client.post("/v1/runs:update", json=request)
        assert response.status_code == 422 and says in response.json()["message"]


async def test_a_step_sent_again_is_overwritten_and_the_summary_is_the_last(
        client: httpx.AsyncClient) -> None:
    stats = {"min": 0.5, "max": 2.5, "sum": 6.0, "sumOfSquares": 14.0}
    for request in [
        body(histogramSeries=[hist(hpoint(3, [0, 1, 2, 3], [1, 1, 1]),
                                   hpoint(1, [0, 1, 2, 3], [5, 0, 0]))]),
        body(histogramSeries=[hist(hpoint(3, [0, 1, 2, 3], [1, 2, 1], stats=stats),
                                   hpoint(2, [0, 2, 4, 6], [0, 0, 9]))]),
    ]:
        assert (await client.post("/v1/runs:update", json=request)).status_code == 200
    (series,) = (await client.get("/api/runs/ws/proj/run-001/values")).json()["series"]
    assert series["count"] == 3 and series["last_step"] == 3
    assert series["summary"] == {"last_step": 3, "last_count": 4, "last_min": 0.5,
                                 "last_max": 2.5, "last_sum": 6.0, "last_avg": 1.5,
                                 "last_std": math.sqrt(14 / 4 - 1.5**2)}
    at = (await client.get(f"/api/runs/ws/proj/run-001/values/{series['id']}/at?step=3")).json()
    assert at["counts"] == [1, 2, 1] and at["edges"] == [0, 1, 2, 3]
    answer = (await client.post("/api/query/histograms", json={
        "workspace": "ws", "project": "proj", "run": "run-001", "metric": "h"})).json()
    assert [p["step"] for p in answer["points"]] == [1, 2, 3]
    assert len(answer["edges"]) == 2  # two distinct edges, stored once each
    missing = await client.get(f"/api/runs/ws/proj/run-001/values/{series['id']}/at?step=7")
    assert missing.status_code == 404 and "no histogram at step 7" in missing.json()["message"]


def test_counts_are_stored_in_their_narrowest_type() -> None:
    for counts, width in (([0, 255], 1), ([256, 0], 2), ([70_000], 4), ([2**40], 8)):
        array = np.array(counts, np.int64)
        blob = encode_numbers(array)
        assert len(blob) == 1 + width * len(counts)
        assert decode_numbers(blob).tolist() == counts
    spread = np.random.default_rng(0).normal(size=1000)
    assert decode_numbers(encode_numbers(spread)).tolist() == spread.tolist()


def test_a_database_from_before_histograms_gets_their_tables(db_target: str) -> None:
    """A database of the schema version before histograms (``SCHEMA_VERSION - 1``) is
    upgraded on opening: its points stay, and histograms can be stored."""
    store = Store(db_target)
    create(store)
    store.update_runs(update("run", 1, {"metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                                        "points": [{"step": 0, "float_value": 1.5}]}))
    store.close()
    _execute(db_target, "DROP TABLE scatter_points", "DROP TABLE histogram_points",
             "DROP TABLE histogram_edges", "DROP TABLE value_series",
             f"UPDATE meta SET value = '{SCHEMA_VERSION - 1}' WHERE key = 'schema_version'")
    store = Store(db_target)
    try:
        assert [s["metric_name"] for s in store.get_run("ws", "proj", "run")["series"]] == ["loss"]
        request = update("run", 1)
        request["run_updates"][0]["histogram_series"] = [{
            "metric_name": "h", "scale": "ML_STEP",
            "points": [{"step": 4, "bin_edges": [0.0, 1.0], "counts": [3]}]}]
        assert store.update_runs(request) == 1
        assert store.histograms("ws", "proj", "run", "h")["points"][0]["counts"] == [3]
    finally:
        store.close()
    if not db_target.startswith("postgresql://"):
        with sqlite3.connect(db_target) as conn:
            assert conn.execute("SELECT value FROM meta").fetchall() == [(str(SCHEMA_VERSION),)]

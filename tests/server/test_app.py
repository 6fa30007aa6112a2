"""The local server over real loopback sockets: the wire contract, errors, idempotency."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from google.protobuf import json_format

from metrana.server import ServerInfo, Store, serve
from tests.protobuf_v06 import api_pb2


def create_body(run: str = "run-001", create_project: bool = True) -> dict[str, Any]:
    return {"run": {"workspace": "ws", "project": "proj", "runName": run, "experiment": "exp"},
            "createProjectIfMissing": create_project}


def update_body(points: list[dict[str, Any]], run: str = "run-001", **series: Any) -> dict[str, Any]:
    return {"sessionId": "1234567890123", "runUpdates": [{
        "workspace": "ws", "project": "proj", "runName": run,
        "series": [{"metricName": "loss", "scale": "ML_STEP",
                    "ordering": "ORDERING_MODE_RELATIVE_ORDERED", "points": points, **series}]}]}


async def stored_points(client: httpx.AsyncClient, run: str = "run-001") -> list[dict[str, Any]]:
    detail = (await client.get(f"/api/runs/ws/proj/{run}")).json()
    out = []
    for s in detail["series"]:
        out.extend((await client.get(f"/api/runs/ws/proj/{run}/series/{s['id']}/points")).json()["points"])
    return out


@pytest.fixture
async def client(server: ServerInfo) -> Any:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        yield c


async def test_create_run_returns_200_then_409(client: httpx.AsyncClient) -> None:
    """A new run is 200; the same run again is 409 so the client can resume or refuse."""
    assert (await client.post("/v1/runs", json=create_body())).status_code == 200
    again = await client.post("/v1/runs", json=create_body())
    assert again.status_code == 409
    assert "already exists" in again.json()["message"]


async def test_missing_project_without_create_flag_is_404(client: httpx.AsyncClient) -> None:
    """createProjectIfMissing=false on an unknown project is refused, naming the flag."""
    response = await client.post("/v1/runs", json=create_body(create_project=False))
    assert response.status_code == 404
    assert "createProjectIfMissing" in response.json()["message"]


async def test_protobuf_made_requests_are_read_back_identically(client: httpx.AsyncClient) -> None:
    """Bodies built with metrana_protobuf + MessageToDict are stored point for point."""
    create = api_pb2.CreateRunRequest(create_project_if_missing=True)
    create.run.workspace, create.run.project, create.run.run_name = "ws", "proj", "run-001"
    rule = create.aggregation_rules.add(metric_name="reward", source_scale="EPISODE",
                                        output_scale="EPISODE", fns=[4])
    rule.aggregate_over_labels.append("environment_id")
    assert (await client.post("/v1/runs", json=json_format.MessageToDict(create))).status_code == 200

    update = api_pb2.UpdateRunsRequest(session_id=2**64 - 1)
    ru = update.run_updates.add(workspace="ws", project="proj", run_name="run-001")
    s = ru.series.add(metric_name="loss", scale="ML_STEP", ordering=1)
    s.labels["evaluation"] = "true"
    values = [0.0, 0.25, -1e300, math.inf, -math.inf, math.nan]
    for step, value in enumerate(values):
        p = s.points.add(step=step, float_value=value)
        p.timestamp.FromNanoseconds(1_795_686_541_000_000_000 + step * 500_000_001)
    rl = ru.rl_series.add(metric_name="reward", environment_id="env-3", episode=0,
                          scale="ENVIRONMENT_STEP", ordering=1)
    for minor in range(3):
        p = rl.points.add(major_step=100, minor_step=minor, float_value=minor / 2)
        p.timestamp.FromNanoseconds(1_795_686_541_000_000_007)
    ru.attributes.add(path="config/optimizer/lr", float_value=0.001)
    ru.attributes.add(path="config/layers", int_value=-(2**63))
    ru.attributes.add(path="config/name", string_value="ppo")
    ru.attributes.add(path="config/flag", bool_value=False)
    response = await client.post("/v1/runs:update", json=json_format.MessageToDict(update))
    assert response.status_code == 200, response.text
    assert "operationId" in response.json()

    detail = (await client.get("/api/runs/ws/proj/run-001")).json()
    assert detail["aggregation_rules"][0]["fns"] == ["AGGREGATION_FN_MIN"]
    assert detail["attributes"] == {
        "config/flag": {"kind": "bool", "value": False},
        "config/layers": {"kind": "int", "value": -(2**63)},
        "config/name": {"kind": "string", "value": "ppo"},
        "config/optimizer/lr": {"kind": "float", "value": 0.001},
    }
    loss, reward = detail["series"]
    assert (loss["labels"], loss["ordering"]) == ({"evaluation": "true"}, "ORDERING_MODE_RELATIVE_ORDERED")
    assert (reward["environment_id"], reward["episode"]) == ("env-3", 0)
    points = (await client.get(f"/api/runs/ws/proj/run-001/series/{loss['id']}/points")).json()["points"]
    assert [p["step"] for p in points] == list(range(6))
    assert [p["timestamp_ns"] for p in points] == [
        1_795_686_541_000_000_000 + i * 500_000_001 for i in range(6)]
    assert [p["value"] for p in points] == [0.0, 0.25, -1e300, "Infinity", "-Infinity", "NaN"]
    rl_points = (await client.get(f"/api/runs/ws/proj/run-001/series/{reward['id']}/points")).json()["points"]
    assert [(p["step"], p["minor_step"], p["value"]) for p in rl_points] == [
        (100, 0, 0.0), (100, 1, 0.5), (100, 2, 1.0)]


async def test_same_batch_twice_is_stored_once(client: httpx.AsyncClient) -> None:
    """A retried batch (lost response) does not duplicate points."""
    await client.post("/v1/runs", json=create_body())
    body = update_body([{"step": str(i), "floatValue": i} for i in range(100)])
    for _ in range(2):
        assert (await client.post("/v1/runs:update", json=body)).status_code == 200
    assert len(await stored_points(client)) == 100


async def test_gzip_bodies_are_accepted(client: httpx.AsyncClient) -> None:
    """Content-Encoding: gzip bodies are decompressed and stored."""
    await client.post("/v1/runs", json=create_body())
    raw = json.dumps(update_body([{"step": "3", "floatValue": 1.0}])).encode()
    response = await client.post("/v1/runs:update", content=gzip.compress(raw),
                                 headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert response.status_code == 200
    assert [p["step"] for p in await stored_points(client)] == [3]


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (b"{not json", {}, 400, "not valid JSON"),
        (json.dumps({"runUpdates": [{"bogus": 1}]}).encode(), {}, 400, 'no field named "bogus"'),
        (json.dumps(update_body([{"step": "x"}])).encode(), {}, 400, "points[0].step"),
        (json.dumps(update_body([{"floatValue": "high"}])).encode(), {}, 400, "floatValue"),
        (json.dumps(update_body([{"step": True}])).encode(), {}, 400, "bool"),
        (json.dumps(update_body([], run="nope")).encode(), {}, 404, "ws/proj/nope does not exist"),
        (b"\x1f\x8b garbage", {"Content-Encoding": "gzip"}, 400, "gzip"),
        (b"{}", {"Content-Encoding": "br"}, 415, "Content-Encoding"),
        (json.dumps(update_body([], metricName="")).encode(), {}, 422, "metricName"),
        (json.dumps(update_body([{"step": str(2**63)}])).encode(), {}, 422, "2**63-1"),
    ],
)
async def test_bad_requests_are_refused_with_a_reason(
    client: httpx.AsyncClient, content: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    """Malformed bodies get a JSON error naming what was wrong, and store nothing."""
    await client.post("/v1/runs", json=create_body())
    good = update_body([{"step": "0", "floatValue": 1.0}])
    assert (await client.post("/v1/runs:update", json=good)).status_code == 200
    response = await client.post("/v1/runs:update", content=content,
                                 headers={"Content-Type": "application/json", **headers})
    assert response.status_code == status, response.text
    assert says in response.json()["message"]
    assert len(await stored_points(client)) == 1


async def test_a_partly_bad_request_stores_nothing(client: httpx.AsyncClient) -> None:
    """A request whose second run update is invalid does not store its first one either."""
    await client.post("/v1/runs", json=create_body())
    body = update_body([{"step": "0", "floatValue": 1.0}])
    body["runUpdates"].append({**body["runUpdates"][0], "runName": "missing"})
    assert (await client.post("/v1/runs:update", json=body)).status_code == 404
    body = update_body([{"step": "0", "floatValue": 1.0}])
    body["runUpdates"][0]["rlSeries"] = [{"metricName": "r", "scale": "EPISODE",
                                          "points": [{"majorStep": str(2**64 - 1)}]}]
    assert (await client.post("/v1/runs:update", json=body)).status_code == 422
    assert await stored_points(client) == []


async def test_oversized_body_is_413(tmp_path: Path) -> None:
    """Bodies over the size limit (plain or after gunzip) are refused with 413."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(lambda task_status: serve(
            db_path=tmp_path / "s.db", port=0, max_body_bytes=1000, task_status=task_status))
        async with httpx.AsyncClient(base_url=info.url,
                                     headers={"Content-Type": "application/json"}) as client:
            big = b"{" + b" " * 2000 + b"}"
            assert (await client.post("/v1/runs:update", content=big)).status_code == 413
            bomb = gzip.compress(big)
            response = await client.post("/v1/runs:update", content=bomb,
                                         headers={"Content-Encoding": "gzip"})
            assert response.status_code == 413
        nursery.cancel_scope.cancel()


async def test_api_key_is_required_when_configured(tmp_path: Path) -> None:
    """With --api-key, a missing or wrong bearer token is 401 and the key is never echoed."""
    async with trio.open_nursery() as nursery:
        info = await nursery.start(lambda task_status: serve(
            db_path=tmp_path / "s.db", port=0, api_key="s3cret-key", task_status=task_status))
        async with httpx.AsyncClient(base_url=info.url) as client:
            missing = await client.post("/v1/runs", json=create_body())
            wrong = await client.post("/v1/runs", json=create_body(),
                                      headers={"Authorization": "Bearer nope"})
            right = await client.post("/v1/runs", json=create_body(),
                                      headers={"Authorization": "Bearer s3cret-key"})
            reads = await client.get("/api/runs")
        assert (missing.status_code, wrong.status_code, right.status_code) == (401, 401, 200)
        assert reads.status_code == 401
        assert "s3cret" not in missing.text + wrong.text
        nursery.cancel_scope.cancel()


async def test_unknown_routes_and_methods(client: httpx.AsyncClient) -> None:
    """Unknown paths are 404, wrong methods 405, with JSON bodies."""
    assert (await client.get("/v2/nothing")).status_code == 404
    assert (await client.get("/v1/runs")).status_code == 405
    assert (await client.get("/api/runs/ws/proj/none")).status_code == 404
    assert (await client.get("/api/runs")).json() == {"runs": []}


async def test_restart_on_the_same_database_keeps_data(tmp_path: Path) -> None:
    """Data committed before a shutdown is there after a restart on the same file."""
    db = tmp_path / "keep.sqlite3"
    for attempt in range(2):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(lambda task_status: serve(
                db_path=db, port=0, task_status=task_status))
            async with httpx.AsyncClient(base_url=info.url) as client:
                if attempt == 0:
                    await client.post("/v1/runs", json=create_body())
                    body = update_body([{"step": str(i), "floatValue": i} for i in range(50)])
                    assert (await client.post("/v1/runs:update", json=body)).status_code == 200
                else:
                    assert len(await stored_points(client)) == 50
            nursery.cancel_scope.cancel()
    assert Store(db).list_runs()[0]["point_count"] == 50

"""The server's side of a job writing one run: the orchestration id stored with the run and
told to a second creator (HTTP/JSON and gRPC alike), and log_distributed series merged
across their writers (the ``merged`` read route), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from metrana_protobuf.ingestion.v1.svc import api_pb2, api_pb2_grpc
from metrana_protobuf.ingestion.v1.types import run_definition_pb2

from metrana.server import background_server, read_api
from metrana.server.errors import NotFound, QueryError
from metrana.server.store import Store
from metrana.server.store.read import MERGED_POINTS


def create(store: Store, run: str) -> None:
    store.create_run({"run": {"workspace": "ws", "project": "p", "run_name": run},
                      "create_project_if_missing": True})


def write(store: Store, run: str, writer: str, steps: Any, values: Any, *,
          session: int, labels: dict[str, str] | None = None, metric: str = "loss") -> None:
    """One writer's points of a log_distributed series, as its client sends them."""
    store.update_runs({"session_id": session, "run_updates": [{
        "workspace": "ws", "project": "p", "run_name": run,
        "series": [{"metric_name": metric, "scale": "ML_STEP", "ordering": 2,
                    "labels": {**(labels or {}), "writer": writer},
                    "points": [{"step": int(s), "timestamp": 1, "float_value": float(v)}
                               for s, v in zip(steps, values, strict=True)]}]}]})


def merged(store: Store, run: str, **body: Any) -> dict[str, Any]:
    answer = read_api.answer(store, "merged", {"workspace": "ws", "project": "p", "run": run,
                                               "metric": "loss", **body})
    assert isinstance(answer, bytes)
    result: dict[str, Any] = json.loads(answer)
    return result


def test_a_merged_series_is_the_mean_across_writers_per_step(db_target: str) -> None:
    """Three writers, each step at most once per writer (one writer misses some steps): per
    step the mean, min, max and count across the writers that have it; a series with other
    labels is merged apart; a request sent again stores nothing twice."""
    store = Store(db_target)
    create(store, "m")
    rng = np.random.default_rng(3)
    table = rng.normal(size=(3, 50))
    steps = np.arange(50)
    for w in range(3):
        keep = steps % 5 != 0 if w == 2 else np.ones(50, bool)
        write(store, "m", str(w), steps[keep], table[w][keep], session=w + 1)
    write(store, "m", "0", steps, table[0], session=1)  # a retry: the same points again
    write(store, "m", "0", steps[:3], [9.0, 9.0, 9.0], session=7, labels={"split": "val"})
    answer = merged(store, "m", n=1000)
    missing = np.zeros_like(table, bool)
    missing[2, ::5] = True
    masked = np.ma.masked_array(table, mask=missing)
    assert answer["x"] == list(range(50))
    assert answer["count"] == masked.count(axis=0).tolist()
    np.testing.assert_allclose(answer["mean"], masked.mean(axis=0).filled(), rtol=1e-12)
    np.testing.assert_allclose(answer["min"], masked.min(axis=0).filled(), rtol=1e-12)
    np.testing.assert_allclose(answer["max"], masked.max(axis=0).filled(), rtol=1e-12)
    assert sorted(w["writer"] for w in answer["writers"]) == ["0", "1", "2"]
    val = merged(store, "m", labels={"split": "val"})
    assert (val["x"], val["mean"], val["count"]) == ([0, 1, 2], [9.0] * 3, [1] * 3)
    store.close()


def test_a_large_merged_range_is_read_from_block_statistics(db_target: str) -> None:
    """Past MERGED_POINTS points, fewer buckets, each holding a block of every writer: every
    point counted once, min and max exact, the mean that of the points in the bucket."""
    store = Store(db_target)
    create(store, "big")
    writers, steps = 4, MERGED_POINTS // 2
    table = np.random.default_rng(5).random((writers, steps))
    xs = np.arange(steps)
    for w in range(writers):
        for start in range(0, steps, 10_000):
            write(store, "big", str(w), xs[start:start + 10_000], table[w, start:start + 10_000],
                  session=w + 1)
    answer = merged(store, "big", n=1000)
    assert len(answer["x"]) == steps // 128  # a block of each writer per bucket
    assert sum(answer["count"]) == writers * steps
    assert min(answer["min"]) == table.min() and max(answer["max"]) == table.max()
    edges = [*answer["x"], steps]
    first = table[:, edges[0]:edges[1]]
    assert answer["mean"][0] == pytest.approx(first.mean(), rel=1e-12)
    store.close()


def test_merged_reads_refuse_what_names_no_merged_series(db_target: str) -> None:
    """A metric without writers is a 404 naming it; labels that are not strings a 400."""
    store = Store(db_target)
    create(store, "e")
    store.update_runs({"session_id": 1, "run_updates": [{
        "workspace": "ws", "project": "p", "run_name": "e",
        "series": [{"metric_name": "loss", "scale": "ML_STEP", "ordering": 1,
                    "points": [{"step": 0, "timestamp": 1, "float_value": 1.0}]}]}]})
    with pytest.raises(NotFound, match="has no series 'loss' logged with log_distributed"):
        merged(store, "e")
    with pytest.raises(QueryError, match="'labels' is an object of label names to values"):
        merged(store, "e", labels={"a": 1})
    store.close()


def test_http_and_grpc_creators_are_told_the_same_job(db_target: str) -> None:
    """A run created with a job id over either protocol: a second create over HTTP/JSON is a
    409 carrying that id, and the gRPC initialization answers the id the HTTP creator
    stored."""
    with background_server(db_target) as info, httpx.Client(base_url=info.url) as http:
        def create_http(run: str, job: str) -> httpx.Response:
            return http.post("/v1/runs", json={
                "run": {"workspace": "ws", "project": "p", "runName": run,
                        "orchestrationIdentifier": job}, "createProjectIfMissing": True})

        def init_grpc(run: str, job: str) -> Any:
            with grpc.insecure_channel(info.url.removeprefix("http://")) as channel:
                stub = api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
                return list(stub.InitializeRunLogging(api_pb2.InitializeRunLoggingRequest(
                    run=run_definition_pb2.Run(workspace="ws", project="p", run_name=run,
                                               orchestration_identifier=job),
                    create_project_if_missing=True), timeout=30))

        assert create_http("h", "job-h").status_code == 200
        again = create_http("h", "job-other")
        assert again.status_code == 409
        assert again.json()["orchestrationIdentifier"] == "job-h"
        found = [r for r in init_grpc("h", "job-other") if r.HasField("initialized_run")]
        assert found and found[0].initialized_run.orchestration_identifier == "job-h"
        assert not found[0].initialized_run.created
        init_grpc("g", "job-g")
        assert create_http("g", "job-g").json()["orchestrationIdentifier"] == "job-g"
        run = http.get("/api/runs/ws/p/g").json()
        assert run["attributes"]["sys/orchestration_id"]["value"] == "job-g"

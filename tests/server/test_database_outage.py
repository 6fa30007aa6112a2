"""PostgreSQL going away under a running ``metrana serve`` (a restart, a failover): requests
are answered 503 within seconds — never a hang, never a 500 — nothing half-stored, and once
the database is back the same server serves again; a client logging through it loses
nothing. Uses a cluster of its own, so stopping it disturbs no other test."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import metrana
from tests.helpers import wait_until
from tests.pgcluster import Cluster, throwaway_cluster
from tests.support import start_serve, stop_serve


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[Cluster]:
    """Durable (fsync, synchronous commit): what a crash keeps is what was acknowledged."""
    with throwaway_cluster(durable=True) as cluster:
        yield cluster


def stderr_lines(proc: subprocess.Popen[str]) -> list[str]:
    """The server's stderr lines as they come (read on a thread)."""
    lines: list[str] = []
    assert proc.stderr is not None
    stream = proc.stderr

    def read() -> None:
        for line in stream:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def body(first: int, count: int) -> dict[str, object]:
    return {"sessionId": "3", "runUpdates": [{
        "workspace": "ws", "project": "proj", "runName": "r",
        "series": [{"metricName": "loss", "scale": "ML_STEP",
                    "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
                    "points": [{"step": str(first + i), "floatValue": first + i}
                               for i in range(count)]}]}]}


def test_an_outage_is_answered_503_quickly_and_the_server_serves_again(
        own_cluster: Cluster) -> None:
    """PostgreSQL stops as in a crash: writes and reads get 503 with Retry-After in seconds
    (the server stays up); once it is back, the retried write is stored, once."""
    proc, url = start_serve(own_cluster.url(own_cluster.create_database("outage")))
    errors = stderr_lines(proc)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            client.post("/v1/runs", json={"run": {"workspace": "ws", "project": "proj",
                                                  "runName": "r"},
                                          "createProjectIfMissing": True}).raise_for_status()
            assert client.post("/v1/runs:update", json=body(0, 50)).status_code == 200
            own_cluster.stop()
            sends: list[Callable[[], httpx.Response]] = [
                lambda: client.post("/v1/runs:update", json=body(50, 50)),
                lambda: client.get("/api/runs")]
            for send in sends:
                t0 = time.monotonic()
                answer = send()
                assert answer.status_code == 503, answer.text
                assert time.monotonic() - t0 < 15
                assert answer.headers["retry-after"] == "1"
                assert "nothing was stored, retry" in answer.json()["message"]
            own_cluster.resume()
            wait_until(lambda: client.post("/v1/runs:update", json=body(50, 50)).status_code
                       == 200, timeout=60)
            assert client.post("/v1/runs:update", json=body(0, 100)).status_code == 200
            (series,) = client.get("/api/runs/ws/proj/r").json()["series"]
            assert series["point_count"] == 100
    finally:
        stop_serve(proc)
    assert proc.returncode == 0
    assert not any("Traceback" in line or "internal error" in line for line in errors), errors


def test_a_client_logging_through_an_outage_loses_nothing(own_cluster: Cluster) -> None:
    """The metrana client logs before, during and after a PostgreSQL outage: its requests are
    refused with 503 meanwhile (seen in the server's log) and retried; every point arrives,
    once, in order."""
    proc, url = start_serve(own_cluster.url(own_cluster.create_database("through")))
    errors = stderr_lines(proc)
    try:
        with metrana.session(workspace_name="ws", project_name="proj", run_name="through",
                             ingestion_url=url) as run:
            for i in range(100):
                run.log("loss", float(i))
            run.flush()
            own_cluster.stop()
            for i in range(100, 200):
                run.log("loss", float(i))
            wait_until(lambda: any("database" in line for line in errors), timeout=60)
            own_cluster.resume()
        metrics = run.get_metrics()
        assert (metrics.sent, metrics.logged) == (200, 200)
        with httpx.Client(base_url=url) as client:
            (series,) = client.get("/api/runs/ws/proj/through").json()["series"]
            points = client.get(f"/api/runs/ws/proj/through/series/{series['id']}/points").json()
        assert [(p["step"], p["value"]) for p in points["points"]] == [
            (i, float(i)) for i in range(200)]
    finally:
        stop_serve(proc)

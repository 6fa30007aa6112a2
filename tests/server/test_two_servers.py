"""Two ``metrana serve`` processes on one database (as behind a load balancer), on either
store: they share nothing but the database, so each answers with what the other stored the
moment it was acknowledged; the same batch or the same run arriving at both at once is
stored once; a run resumed through the other server appends."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

import metrana
from metrana.server import Store
from tests.pgcluster import Cluster
from tests.support import STORES, in_background, start_serve, stop_serve, writers_held_at


@pytest.fixture(scope="module", params=STORES)
def shared_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database per store for this module's tests (each uses its own run names)."""
    if request.param == "sqlite":
        return str(tmp_path_factory.mktemp("two") / "two.sqlite3")
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    return cluster.url(cluster.create_database())


@pytest.fixture(scope="module")
def two_servers(shared_db: str) -> Iterator[tuple[str, str]]:
    """Two server processes on ``shared_db``; their URLs."""
    procs: list[subprocess.Popen[str]] = []
    urls = []
    try:
        for _ in range(2):
            proc, url = start_serve(shared_db)
            procs.append(proc)
            urls.append(url)
        yield urls[0], urls[1]
    finally:
        for proc in procs:
            stop_serve(proc)


def create_body(run: str) -> dict[str, Any]:
    return {"run": {"workspace": "ws", "project": "proj", "runName": run},
            "createProjectIfMissing": True}


def update_body(run: str, session: int, i: int) -> dict[str, Any]:
    """Request i of a session: 10 more points of "loss", a new series "m{i}", an RL series of
    one of three environments, and an attribute."""
    return {"sessionId": str(session), "runUpdates": [{
        "workspace": "ws", "project": "proj", "runName": run,
        "series": [
            {"metricName": "loss", "scale": "ML_STEP", "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
             "points": [{"step": str(i * 10 + k), "floatValue": i * 10 + k} for k in range(10)]},
            {"metricName": f"m{i}", "scale": "ML_STEP",
             "points": [{"step": "0", "floatValue": -i}]}],
        "rlSeries": [{"metricName": "reward", "environmentId": f"env-{i % 3}", "scale": "EPISODE",
                      "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
                      "points": [{"majorStep": str(i), "minorStep": "0", "floatValue": 1.0}]}],
        "attributes": [{"path": f"config/i{i}", "intValue": str(i)}]}]}


def everything(client: httpx.Client, run: str) -> dict[str, Any]:
    """A run as one server answers it: detail, and every series' points and buckets."""
    detail: dict[str, Any] = client.get(f"/api/runs/ws/proj/{run}").json()
    base = f"/api/runs/ws/proj/{run}/series"
    for s in detail["series"]:
        s["points"] = client.get(f"{base}/{s['id']}/points").json()["points"]
        s["buckets"] = client.get(f"{base}/{s['id']}/buckets", params={"n": 3}).json()
    detail.pop("status")  # computed from the reader's clock
    return detail


def test_two_servers_take_alternate_requests_of_one_run(two_servers: tuple[str, str]) -> None:
    """Twelve requests of one session go alternately to A and B, each creating a series:
    after each one the *other* server already shows it (series, points, buckets, attributes,
    the run's counts). At the end both answer every read identically."""
    with httpx.Client(base_url=two_servers[0]) as a, httpx.Client(base_url=two_servers[1]) as b:
        assert a.post("/v1/runs", json=create_body("shared")).status_code == 200
        clients = (a, b)
        for i in range(12):
            writer, reader = clients[i % 2], clients[1 - i % 2]
            assert writer.post("/v1/runs:update", json=update_body("shared", 5, i)).status_code \
                == 200
            seen = reader.get("/api/runs/ws/proj/shared").json()
            series = {s["metric_name"] + s["environment_id"]: s for s in seen["series"]}
            assert f"m{i}" in series and series["loss"]["point_count"] == 10 * (i + 1)
            assert seen["attributes"][f"config/i{i}"] == {"kind": "int", "value": i}
            (listed,) = [r for r in reader.get("/api/runs").json()["runs"] if r["run"] == "shared"]
            assert listed["point_count"] == 10 * (i + 1) + 2 * (i + 1)
            points = reader.get(f"/api/runs/ws/proj/shared/series/{series['loss']['id']}/points",
                                params={"start": 10 * i}).json()["points"]
            assert [p["value"] for p in points] == [float(10 * i + k) for k in range(10)]
        final_a, final_b = everything(a, "shared"), everything(b, "shared")
    assert final_a == final_b
    assert len(final_a["series"]) == 12 + 1 + 3
    assert [s["metric_name"] for s in final_a["series"][:3]] == ["loss", "m0", "reward"]


def test_the_same_batch_at_both_servers_at_once_is_stored_once(
        two_servers: tuple[str, str], shared_db: str) -> None:
    """A batch sent to A and B at the same moment (a client that timed out on one and retried
    on the other): both answer 200, each point is stored once — when the batch creates its
    series and when it appends to existing ones."""
    with httpx.Client(base_url=two_servers[0], timeout=60) as a, \
            httpx.Client(base_url=two_servers[1], timeout=60) as b:
        assert a.post("/v1/runs", json=create_body("twice")).status_code == 200
        for i, table in ((0, "series"), (1, "chunks"), (2, "series")):
            body = update_body("twice", 9, i)
            body["runUpdates"][0]["series"][1] = {  # new in the first batch, then existing
                "metricName": "m", "scale": "ML_STEP", "points": [{"step": str(i)}]}
            with writers_held_at(shared_db, table, 2) as wait:
                join = in_background(partial(a.post, "/v1/runs:update", json=body),
                                     partial(b.post, "/v1/runs:update", json=body))
                wait()
            assert [r.status_code for r in join()] == [200, 200]
        counts = {s["metric_name"] + s["environment_id"]: s["point_count"]
                  for s in b.get("/api/runs/ws/proj/twice").json()["series"]}
    assert counts == {"loss": 30, "m": 3, "rewardenv-0": 1, "rewardenv-1": 1, "rewardenv-2": 1}


def test_two_clients_creating_one_run_on_two_servers_get_one_200_and_one_409(
        two_servers: tuple[str, str], shared_db: str) -> None:
    """Two clients create the same run (and project) through A and B at the same moment: one
    is told 200, the other 409 (so it resumes), and there is one run."""
    with httpx.Client(base_url=two_servers[0], timeout=60) as a, \
            httpx.Client(base_url=two_servers[1], timeout=60) as b:
        with writers_held_at(shared_db, "projects", 2) as wait:
            join = in_background(partial(a.post, "/v1/runs", json=create_body("race")),
                                 partial(b.post, "/v1/runs", json=create_body("race")))
            wait()
        assert sorted(r.status_code for r in join()) == [200, 409]
        assert [r["run"] for r in a.get("/api/runs").json()["runs"]].count("race") == 1


def test_a_run_resumed_through_the_other_server_appends(two_servers: tuple[str, str]) -> None:
    """The metrana client logs a session through A, then resumes the run through B: B puts
    the second session's steps after the first's, and A answers with all of them."""
    for url, offset in ((two_servers[0], 0), (two_servers[1], 100)):
        with metrana.session(workspace_name="ws", project_name="proj", run_name="resumed",
                             ingestion_url=url) as run:
            for i in range(100):
                run.log("loss", float(offset + i))
        assert run.get_metrics().sent == 100
    with httpx.Client(base_url=two_servers[0]) as a:
        (series,) = a.get("/api/runs/ws/proj/resumed").json()["series"]
        points = a.get(f"/api/runs/ws/proj/resumed/series/{series['id']}/points").json()
    assert [(p["step"], p["value"]) for p in points["points"]] == [
        (i, float(i)) for i in range(200)]


def test_a_server_opening_a_sqlite_file_another_is_creating_waits_for_it(
        tmp_path: Path) -> None:
    """Another server holds the write lock of a new file it is creating: switching the file
    to WAL gets "database is locked" at once, without SQLite's busy wait — so opening it
    waits for the lock like a write does, instead of failing (it used to fail at once)."""
    path = tmp_path / "new.sqlite3"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE creating (x)")
    outcome: list[object] = []

    def open_store() -> None:
        try:
            Store(path).close()
            outcome.append("ok")
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    opener = threading.Thread(target=open_store)
    opener.start()
    opener.join(timeout=1)  # a failure would show here; a wait is what is expected
    assert opener.is_alive() and outcome == []
    other.execute("COMMIT")
    opener.join(timeout=60)
    assert outcome == ["ok"]
    other.close()


def _open_store(path: str, ready: Any, results: Any) -> None:
    ready.wait()
    try:
        Store(path).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - handed to the test
        results.put(repr(exc))


def test_servers_opening_a_new_sqlite_file_together_never_fail(tmp_path: Path) -> None:
    """Three servers start on one new SQLite file at the same moment, 10 times over: each
    opens it."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    failures = []
    for attempt in range(10):
        path = str(tmp_path / f"new-{attempt}.sqlite3")
        ready, results = context.Barrier(3), context.Queue()
        procs = [context.Process(target=_open_store, args=(path, ready, results))
                 for _ in range(3)]
        for proc in procs:
            proc.start()
        failures += [r for r in (results.get(timeout=60) for _ in procs) if r != "ok"]
        for proc in procs:
            proc.join(60)
    assert failures == []


def initialize_request(run: str, job: str) -> Any:
    from metrana_protobuf.ingestion.v1.svc import api_pb2
    from metrana_protobuf.ingestion.v1.types import run_definition_pb2

    return api_pb2.InitializeRunLoggingRequest(
        run=run_definition_pb2.Run(workspace="ws", project="proj", run_name=run,
                                   orchestration_identifier=job),
        create_project_if_missing=True)


def initialize(stub: Any, run: str) -> list[Any]:
    return list(stub.InitializeRunLogging(initialize_request(run, "job-7"), timeout=60))


def test_two_grpc_clients_creating_one_run_on_two_servers_both_join_it(
        two_servers: tuple[str, str], shared_db: str) -> None:
    """Two processes of one job (one orchestration id) initialize the same run through A and B
    at the same moment, over gRPC: one creates it, the other is told it exists *with that
    job's id* (so the official client joins instead of refusing), and there is one run."""
    import grpc
    from metrana_protobuf.ingestion.v1.svc import api_pb2_grpc

    channels = [grpc.insecure_channel(url.removeprefix("http://")) for url in two_servers]
    try:
        stubs = [api_pb2_grpc.IngestServiceStub(c) for c in channels]  # type: ignore[no-untyped-call]
        for attempt in range(3):
            run = f"grpc-race-{attempt}"
            with writers_held_at(shared_db, "projects" if attempt == 0 else "runs", 2) as wait:
                join = in_background(*(partial(initialize, stub, run) for stub in stubs))
                wait()
            started = [responses[0].initialized_run for responses in join()]
            assert sorted(s.created for s in started) == [False, True]
            assert [s.orchestration_identifier for s in started] == ["job-7", "job-7"]
            assert started[0].run_id == started[1].run_id
        with httpx.Client(base_url=two_servers[0]) as a:
            names = [r["run"] for r in a.get("/api/runs").json()["runs"]]
        assert all(names.count(f"grpc-race-{attempt}") == 1 for attempt in range(3))
    finally:
        for channel in channels:
            channel.close()


RANK = """
init(orchestration_id="job-9")
rank = int(sys.argv[3])
for i in range(100):
    metrana.log(f"rank{rank}/loss", float(rank * 1000 + i))
metrana.log("shared", float(rank), step=rank)
info = metrana.close()
print("sent", info.metrics.float_points_sent)
"""


def test_two_official_clients_of_one_job_on_two_servers_share_one_run(
        two_servers: tuple[str, str], shared_db: str, tmp_path: Path) -> None:
    """Two processes of one job, each with the official client (``metrana==1.11.0``) pointed
    at its own server, create-or-resume the same run at the same moment: one run, both
    processes' points stored once, and the run is closed."""
    from metrana.query import QueryClient
    from tests.official_client import official_python, start_official

    official_python()  # the virtualenv made (or found) before the race is timed
    with writers_held_at(shared_db, "projects", 2) as wait:
        procs = [start_official(RANK, url, "official-race", str(rank), cwd=tmp_path)
                 for rank, url in enumerate(two_servers)]
        try:
            wait()
        except BaseException:
            for proc in procs:
                proc.kill()
            raise
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "sent 101" in out
    with QueryClient("ws", "proj", url=two_servers[1]) as client:
        runs = client.fetch_runs().set_index("name")
        frame = client.fetch_float_series("official-race", ["rank0/loss", "rank1/loss", "shared"])
        listing = client.list_series("official-race")
    assert runs.loc["official-race", "status"] == "finished"
    assert list(runs.index).count("official-race") == 1
    assert dict(zip(listing["metric"], listing["count"], strict=True)) == {
        "rank0/loss": 100, "rank1/loss": 100, "shared": 2}
    for rank in (0, 1):
        values = frame[f"rank{rank}/loss"].dropna()
        assert values.index.get_level_values("step").tolist() == list(range(100))
        assert values.tolist() == [float(rank * 1000 + i) for i in range(100)]
    assert frame["shared"].dropna().tolist() == [0.0, 1.0]

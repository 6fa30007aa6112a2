"""The gRPC API's promises a client cannot easily provoke: an update resent on a new stream is
stored once, HTTP/JSON (0.6.x) and gRPC (0.7) runs live side by side, and every refusal is a
status with a message a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from metrana_protobuf.ingestion.v1.svc import api_pb2, api_pb2_grpc
from metrana_protobuf.ingestion.v1.types import run_definition_pb2, updates_pb2

from metrana.server import ServerInfo
from metrana.server.store import Store
from tests.helpers import read_points
from tests.support import start_serve, stop_serve

Stub = Any


@pytest.fixture
def served(db_target: str) -> Iterator[tuple[ServerInfo, Stub]]:
    proc, url = start_serve(db_target)
    channel = grpc.insecure_channel(url.removeprefix("http://"))
    try:
        yield ServerInfo(url=url, db_path=db_target), api_pb2_grpc.IngestServiceStub(channel)  # type: ignore[no-untyped-call]
    finally:
        channel.close()
        stop_serve(proc)


def initialize(stub: Stub, run: str) -> bytes:
    request = api_pb2.InitializeRunLoggingRequest(
        run=run_definition_pb2.Run(workspace="ws", project="proj", run_name=run),
        create_project_if_missing=True)
    responses = list(stub.InitializeRunLogging(request, timeout=30))
    token: bytes = responses[0].initialized_run.run_id
    return token


def update(token: bytes, session: int, seq: int, first_step: int, values: list[float]) -> Any:
    return api_pb2.UpdateRunRequest(
        run_id=token, logger_session_id=session, sequence_number=seq,
        series_declarations=[updates_pb2.SeriesDeclaration(
            metric_name="loss", scale="ML_STEP", declaration_id=1,
            ordering=updates_pb2.ORDERING_MODE_ABSOLUTE_ORDERED)],
        series=[updates_pb2.StreamingSeriesUpdate(series_id=1, point_batches=[
            updates_pb2.PointBatch(values=values, first_step=first_step,
                                   timestamp_millis=1_700_000_000_000)])])


def stream(stub: Stub, token: bytes, *updates: Any) -> list[Any]:
    opening = api_pb2.UpdateRunRequest(run_id=token)
    return list(stub.UpdateRunStream(iter([opening, *updates]), timeout=30))


def steps(info: ServerInfo, run: str) -> list[tuple[int, float]]:
    points = next(iter(read_points(info, run).values()))
    return [(p["step"], p["value"]) for p in points]


def test_an_update_resent_on_a_new_stream_is_stored_once(served: tuple[ServerInfo, Stub]) -> None:
    """The client resends what was not acknowledged after a reconnect (same logger session,
    same sequence number): the points are stored once, on either store."""
    info, stub = served
    token = initialize(stub, "resend")
    first = update(token, 2**64 - 5, 256, 0, [1.0, 2.0, 3.0])
    assert len(stream(stub, token, first)) == 2  # one response per message, in order
    later = update(token, 2**64 - 5, 512, 3, [4.0])
    assert len(stream(stub, token, first, later, first)) == 4
    assert steps(info, "resend") == [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)]


def test_http_json_and_grpc_runs_side_by_side(served: tuple[ServerInfo, Stub]) -> None:
    """A run logged over HTTP/JSON (0.6.x, ``sessionId``) is resumed over gRPC (0.7): the gRPC
    client learns its last step and continues after it."""
    info, stub = served
    with httpx.Client(base_url=info.url) as http:
        http.post("/v1/runs", json={"run": {"workspace": "ws", "project": "proj",
                                            "runName": "both"}, "createProjectIfMissing": True}
                  ).raise_for_status()
        http.post("/v1/runs:update", json={"sessionId": "7", "runUpdates": [{
            "workspace": "ws", "project": "proj", "runName": "both",
            "series": [{"metricName": "loss", "scale": "ML_STEP",
                        "ordering": "ORDERING_MODE_RELATIVE_ORDERED",
                        "points": [{"step": "0", "floatValue": 0.5},
                                   {"step": "1", "floatValue": 0.25}]}]}]}).raise_for_status()
    request = api_pb2.InitializeRunLoggingRequest(
        run=run_definition_pb2.Run(workspace="ws", project="proj", run_name="both"),
        resume_policy=api_pb2.RESUME_POLICY_ALLOW)
    responses = list(stub.InitializeRunLogging(request, timeout=30))
    assert not responses[0].initialized_run.created
    (series,) = responses[1].last_logged_steps.series
    assert (series.metric_name, series.scale, series.last_step) == ("loss", "ML_STEP", 1)
    token = responses[0].initialized_run.run_id
    stream(stub, token, update(token, 99, 256, 2, [0.125]))
    assert steps(info, "both") == [(0, 0.5), (1, 0.25), (2, 0.125)]


def distributed(token: bytes, session: int, seq: int, steps: list[int], values: list[float],
                labels: dict[str, str] | None = None) -> Any:
    """What the official client's ``log_distributed`` sends: a series declared unordered."""
    return api_pb2.UpdateRunRequest(
        run_id=token, logger_session_id=session, sequence_number=seq,
        series_declarations=[updates_pb2.SeriesDeclaration(
            metric_name="loss", scale="ML_STEP", declaration_id=4, labels=labels or {},
            ordering=updates_pb2.ORDERING_MODE_ABSOLUTE_UNORDERED)],
        series=[updates_pb2.StreamingSeriesUpdate(series_id=4, point_batches=[
            updates_pb2.PointBatch(values=values, steps=steps,
                                   timestamp_millis=1_700_000_000_000)])])


def writer_stream(stub: Stub, token: bytes, logger_id: int, *updates: Any) -> list[Any]:
    """A stream as the official client opens it: the first message names the process."""
    opening = api_pb2.UpdateRunRequest(run_id=token, logger_id=logger_id)
    return list(stub.UpdateRunStream(iter([opening, *updates]), timeout=30))


def test_log_distributed_over_grpc_is_a_series_per_writer_served_merged(
        served: tuple[ServerInfo, Stub]) -> None:
    """Two processes (logger_id 7 and 9) send a series declared ORDERING_MODE_ABSOLUTE_UNORDERED
    at the same steps: each is stored as its own series labelled ``writer=<logger_id>`` (as our
    client's log_distributed), an update resent on a new stream is stored once, the merged read
    has both writers at every step, and a process initializing again learns its own last step
    only."""
    from metrana.query import QueryClient

    info, stub = served
    token = initialize(stub, "dist")
    first = distributed(token, 70, 256, [0, 1], [1.0, 2.0])
    writer_stream(stub, token, 7, first)
    writer_stream(stub, token, 7, first, distributed(token, 70, 512, [2], [3.0]), first)
    writer_stream(stub, token, 9, distributed(token, 90, 256, [0, 1], [5.0, 6.0]))
    with QueryClient("ws", "proj", url=info.url) as client:
        merged = client.fetch_distributed_series("dist", "loss")
        assert sorted(merged.attrs["writers"]) == ["7", "9"]
        assert merged.index.tolist() == [0, 1, 2]
        assert merged["count"].tolist() == [2, 2, 1]
        assert merged["mean"].tolist() == [3.0, 4.0, 3.0]
        assert (merged["min"].tolist(), merged["max"].tolist()) == ([1.0, 2.0, 3.0],
                                                                     [5.0, 6.0, 3.0])
        seven = client.fetch_float_series("dist", "loss", labels={"writer": "7"})
        assert seven["loss"].tolist() == [1.0, 2.0, 3.0]
    request = api_pb2.InitializeRunLoggingRequest(
        run=run_definition_pb2.Run(workspace="ws", project="proj", run_name="dist"),
        resume_policy=api_pb2.RESUME_POLICY_ALLOW, logger_id=9)
    (series,) = list(stub.InitializeRunLogging(request, timeout=30))[1].last_logged_steps.series
    assert (series.metric_name, series.flat_labels, series.last_step) == ("loss", "", 1)


def status(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value.code(), raised.value.details()


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
def test_refusals_are_statuses_with_a_message(served: tuple[ServerInfo, Stub]) -> None:
    """A run this database does not know, an undeclared series, an environment attribute
    without its environment, traces:
    each ends the call at once with a status naming the problem."""
    info, stub = served
    assert status(lambda: stream(stub, b"0123456789abcdef")) == (
        grpc.StatusCode.NOT_FOUND, "this run_id names no run of this server's database "
        f"({info.db_path}); initialize the run again")
    token = initialize(stub, "refused")
    undeclared = api_pb2.UpdateRunRequest(logger_session_id=1, sequence_number=1, series=[
        updates_pb2.StreamingSeriesUpdate(series_id=9, point_batches=[
            updates_pb2.PointBatch(values=[1.0], first_step=0)])])
    code, message = status(lambda: stream(stub, token, undeclared))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "series_id 9 was not declared" in message
    envs = update(token, 1, 2, 0, [1.0])
    envs.env_attr_updates.add(environment_id="").attributes.add(path="seed", int_value=1)
    code, message = status(lambda: stream(stub, token, envs))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT,
                               "env_attr_updates: environment_id must not be empty")
    assert read_points(info, "refused") == {}  # nothing of that update was stored
    mislabelled = distributed(token, 1, 3, [0], [1.0], labels={"writer": "mine"})
    code, message = status(lambda: writer_stream(stub, token, 12, mislabelled))
    assert (code, message) == (grpc.StatusCode.INVALID_ARGUMENT, "log_distributed('loss'): the "
                               "label 'writer' is set by metrana serve (this process's logger_id,"
                               " 12); name yours otherwise")
    code, message = status(lambda: stub.UpdateTraces(api_pb2.UpdateTracesRequest(), timeout=30))
    assert (code, message) == (grpc.StatusCode.UNIMPLEMENTED,
                               "agent traces are not stored by metrana serve")


@pytest.mark.parametrize("db_target", ["sqlite"], indirect=True)
def test_gzip_compressed_messages_are_read(served: tuple[ServerInfo, Stub]) -> None:
    """A client that compresses its messages (gzip) is understood."""
    info, stub = served
    token = initialize(stub, "gzip")
    opening = api_pb2.UpdateRunRequest(run_id=token)
    list(stub.UpdateRunStream(iter([opening, update(token, 3, 256, 0, [5.0])]), timeout=30,
                              compression=grpc.Compression.Gzip))
    assert steps(info, "gzip") == [(0, 5.0)]


def test_unknown_methods_say_what_is_served(tmp_path: Path) -> None:
    """A gRPC call to a method this server does not have is UNIMPLEMENTED, naming the service."""
    proc, url = start_serve(tmp_path / "db.sqlite3")
    try:
        with grpc.insecure_channel(url.removeprefix("http://")) as channel:
            call = channel.unary_unary("/other.Service/Method")
            code, message = status(lambda: call(b"", timeout=30))
        assert code == grpc.StatusCode.UNIMPLEMENTED
        assert "metrana_protobuf.ingestion.v1.svc.IngestService of metrana-protobuf 0.7" in message
    finally:
        stop_serve(proc)


def test_histograms_and_clouds_are_stored_and_checked(served: tuple[ServerInfo, Stub]) -> None:
    """The official client's histogram and scatter updates are stored as over HTTP/JSON, on
    either store; a bad one is INVALID_ARGUMENT naming the field, and nothing of it stored."""
    info, stub = served
    token = initialize(stub, "values")
    values = api_pb2.UpdateRunRequest(logger_session_id=3, sequence_number=1, series_declarations=[
        updates_pb2.SeriesDeclaration(metric_name="w", scale="ML_STEP", declaration_id=1),
        updates_pb2.SeriesDeclaration(metric_name="emb", scale="ML_STEP", declaration_id=2)])
    histogram = values.histogram_series.add(series_id=1)
    histogram.points.add(step=3, timestamp_millis=1_700_000_000_000, bin_edges=[0.0, 1.0, 2.0],
                         counts=[4, 5]).stats.CopyFrom(
        updates_pb2.HistogramPoint.HistogramStats(min=0.5, max=1.5, sum=9.0, sum_of_squares=11.0))
    cloud = values.scatter_series.add(series_id=2, is_3d=True)
    cloud.metadata_labels["x_title"] = "u"
    cloud.points.add(step=0, xs=[1.0, 2.0], ys=[3.0, 4.0], zs=[5.0, 6.0])
    assert len(stream(stub, token, values)) == 2
    store = Store(info.db_path)
    try:
        stored = store.histograms("ws", "proj", "values", "w")
        assert [(p["step"], p["counts"], p["stats"]) for p in stored["points"]] == [
            (3, [4, 5], [0.5, 1.5, 9.0, 11.0])]
        assert stored["points"][0]["t"] == 1_700_000_000_000 * 1_000_000
        clouds = store.scatter("ws", "proj", "values", "emb", None)
        assert clouds["series"]["titles"] == {"x_title": "u"}
        assert clouds["points"][0]["zs"] == [5.0, 6.0]
    finally:
        store.close()
    bad = api_pb2.UpdateRunRequest(logger_session_id=3, sequence_number=2, series_declarations=[
        updates_pb2.SeriesDeclaration(metric_name="w", scale="ML_STEP", declaration_id=1)])
    bad.histogram_series.add(series_id=1).points.add(step=4, bin_edges=[0.0, 1.0], counts=[1, 2])
    code, message = status(lambda: stream(stub, token, bad))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "histogramSeries[0].points[0].binEdges: 2 edges for 2 bins" in message
    store = Store(info.db_path)
    try:
        assert [p["step"] for p in store.histograms("ws", "proj", "values", "w")["points"]] == [3]
    finally:
        store.close()

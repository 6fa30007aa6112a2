"""gRPC's wire pieces and the official client's 0.7 messages, turned into what the store writes.

Pure functions and small records, no I/O: :mod:`.grpc_ingest` owns the connection.

- **Framing**: a gRPC message is a 1-byte compressed flag, a 4-byte big-endian length, then the
  protobuf bytes (:class:`FrameReader`, :func:`frame`); the call ends with ``grpc-status`` and
  ``grpc-message`` trailers (:func:`trailers`).
- **Runs** are named on the stream by 16 opaque bytes: :func:`run_token` derives them from the
  run's names and creation time, so a server restarted on the same database recognises the token
  a client still holds, and one restarted on another database does not.
- **Updates** (``UpdateRunRequest``, 0.7) become the dict :meth:`.Store.update_runs` takes (the
  0.6.x ``UpdateRunsRequest`` shape, keyed by proto field names), with the logger session as the
  store's session: points are identified by series, session and step, so a resent update lands
  on the points it already stored.
- **RL minor steps**: with automatic numbering (``ORDERING_MODE_ABSOLUTE_ORDERED`` and not
  ``treat_minors_as_flat_steps``) the client numbers an RL batch's environment steps (or, on the
  EPISODE scale, its episodes) from 0 within each ``rl_step``, and the server continues them
  across rl_steps. What the store keeps is the flat number, as HTTP/JSON clients send it: the
  points of rl_step ``r`` start at :class:`RlBase`'s base for ``r``.
- **log_distributed**: the official client declares its series
  ``ORDERING_MODE_ABSOLUTE_UNORDERED`` and marks nothing else; each process's points are
  stored as our own client's ``log_distributed`` stores them, a series of the process's own
  labelled ``writer=<logger_id>`` (:func:`writer_name`), which the merged read route, the
  dashboard and ``metrana.query`` serve merged across writers.
"""

from __future__ import annotations

import hashlib
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import attrs
import numpy as np
from google.protobuf.message import DecodeError
from metrana_protobuf.common.v1 import series_pb2
from metrana_protobuf.ingestion.v1.svc import api_pb2
from metrana_protobuf.ingestion.v1.types import updates_pb2

from .._orchestration import WRITER_LABEL
from .columnar import PointColumns
from .ingest import RunKey

__all__ = ["FrameReader", "GrpcError", "RlBase", "Status", "convert_update",
           "frame", "init_responses", "labels_text", "run_token", "trailers", "writer_name"]

SERVICE = "metrana_protobuf.ingestion.v1.svc.IngestService"
ORDERED = updates_pb2.ORDERING_MODE_ABSOLUTE_ORDERED
UNORDERED = updates_pb2.ORDERING_MODE_ABSOLUTE_UNORDERED  # the official client's log_distributed
_HEADER = struct.Struct(">BI")


class Status:
    """The gRPC status codes this server answers with."""

    OK = 0
    INVALID_ARGUMENT = 3
    NOT_FOUND = 5
    PERMISSION_DENIED = 7
    FAILED_PRECONDITION = 9
    RESOURCE_EXHAUSTED = 8
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    UNAUTHENTICATED = 16


class GrpcError(Exception):
    """Ends a call with a status other than OK; ``message`` is what the client shows."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def trailers(code: int, message: str = "") -> list[tuple[bytes, bytes]]:
    out = [(b"grpc-status", str(code).encode())]
    if message:  # percent-encoded, as the gRPC HTTP/2 spec asks
        out.append((b"grpc-message", quote(message, safe=" !#$&'()*+,/:;=?@[]~").encode()))
    return out


def frame(message: Any) -> bytes:
    data: bytes = message.SerializeToString()
    return _HEADER.pack(0, len(data)) + data


class FrameReader:
    """Cuts a request body's bytes into gRPC messages, whatever the chunks they arrive in."""

    def __init__(self, max_message_bytes: int, encoding: str) -> None:
        self._buffer = bytearray()
        self._max = max_message_bytes
        self._encoding = encoding

    def feed(self, data: bytes) -> Iterator[bytes]:
        self._buffer += data
        while len(self._buffer) >= _HEADER.size:
            compressed, length = _HEADER.unpack_from(self._buffer)
            if length > self._max:
                raise GrpcError(Status.RESOURCE_EXHAUSTED,
                                f"a message of {length:,} bytes exceeds this server's limit of "
                                f"{self._max:,}")
            end = _HEADER.size + length
            if len(self._buffer) < end:
                return
            payload = bytes(self._buffer[_HEADER.size:end])
            del self._buffer[:end]
            yield self._decompress(payload) if compressed else payload

    def finish(self) -> None:
        if self._buffer:
            raise GrpcError(Status.INVALID_ARGUMENT,
                            "the request ended inside a message (truncated body)")

    def _decompress(self, payload: bytes) -> bytes:
        if self._encoding != "gzip":
            raise GrpcError(Status.UNIMPLEMENTED,
                            f"grpc-encoding {self._encoding!r} is not supported by metrana serve; "
                            "use compression='none' (or gzip)")
        inflater = zlib.decompressobj(wbits=31)
        try:
            out = inflater.decompress(payload, self._max + 1)
        except zlib.error as exc:
            raise GrpcError(Status.INVALID_ARGUMENT, f"message is not valid gzip: {exc}") from None
        if len(out) > self._max or not inflater.eof:
            raise GrpcError(Status.RESOURCE_EXHAUSTED if len(out) > self._max
                            else Status.INVALID_ARGUMENT, "gzip message too large or truncated")
        return out


def parse(kind: type[Any], data: bytes) -> Any:
    try:
        return kind.FromString(data)
    except DecodeError as exc:
        raise GrpcError(Status.INVALID_ARGUMENT,
                        f"not a valid {kind.__name__} (metrana-protobuf 0.7): {exc}") from None


def run_token(workspace: str, project: str, run_name: str, created_ns: int) -> bytes:
    """The 16 bytes that name a run on the stream (``InitializedRun.run_id``)."""
    text = f"{workspace}\0{project}\0{run_name}\0{created_ns}".encode()
    return hashlib.sha256(text).digest()[:16]


def labels_text(labels: dict[str, str]) -> str:
    """Labels as ``LastLoggedSteps.SeriesInfo.flat_labels``: ``k=v`` pairs by key, joined by
    ``&`` (what the client parses back into the series it declares on resume; measured: it
    names a key set ``evaluation&split``)."""
    return "&".join(f"{k}={labels[k]}" for k in sorted(labels))


def writer_name(logger_id: int, session: int = 0) -> str:
    """The writer a process is: its ``logger_id`` (``init(logger_id=...)``, random per process
    unless pinned; ``InitializeRunLogging``, the update stream's first message and
    ``UpdateRuns`` carry it), else its logger session."""
    return str(logger_id or session)


# --------------------------------------------------------------------------- InitializeRunLogging

def init_responses(run: dict[str, Any], token: bytes, created: bool, orchestration: str,
                   writer: str) -> list[Any]:
    """What InitializeRunLogging streams back for ``run`` (:meth:`.Store.get_run`'s dict): the
    run, then each series' last step, each environment's last rl_step and episode, and each RL
    metric's declaration, each part closed by ``is_last``. Of a ``log_distributed`` metric,
    ``writer``'s own series only, as the client declared it (without the ``writer`` label)."""
    response = api_pb2.InitializeRunLoggingResponse
    started = response.InitializedRun(created=created, run_id=token,
                                      orchestration_identifier=orchestration)
    started.creation_time.FromNanoseconds(int(run["created_ns"]))
    steps = []
    envs: dict[str, list[int]] = {}
    families: dict[tuple[str, str], Any] = {}
    for series in run["series"]:
        if series["last_step"] is None:
            continue
        ordering = updates_pb2.OrderingMode.Value(series["ordering"]) \
            if series["ordering"] in updates_pb2.OrderingMode.keys() else ORDERED
        if series["kind"] == "standard":
            labels = dict(series["labels"])
            if ordering == UNORDERED and WRITER_LABEL in labels:
                if labels.pop(WRITER_LABEL) != writer:
                    continue  # another process's points of a log_distributed metric
            steps.append(response.LastLoggedSteps.SeriesInfo(
                metric_name=series["metric_name"], scale=series["scale"],
                flat_labels=labels_text(labels), ordering=ordering,
                last_step=int(series["last_step"]), value_kind=series_pb2.SERIES_VALUE_KIND_FLOAT))
            continue
        env = envs.setdefault(series["environment_id"], [0, 0])
        env[0] = max(env[0], int(series["last_step"]))
        episodic = series["episode"] is not None
        last_episode = series["episode"] if episodic else (series["last_point"] or {}).get(
            "minor_step", 0) if series["scale"] == "EPISODE" else 0
        env[1] = max(env[1], int(last_episode))
        key = (series["metric_name"], series["scale"])
        family = families.get(key)
        if family is None:
            families[key] = response.RlFamilyDeclarations.RlFamilyDeclaration(
                metric_name=key[0], scale=key[1], label_key_set="&".join(sorted(series["labels"])),
                ordering=ordering, value_kind=series_pb2.SERIES_VALUE_KIND_FLOAT, episodic=episodic)
        elif episodic:
            family.episodic = True
    state = response.EnvStatuses.EnvState
    return [
        response(initialized_run=started),
        response(last_logged_steps=response.LastLoggedSteps(series=steps, is_last=True)),
        response(env_statuses=response.EnvStatuses(
            envs=[state(env_name=name, last_rl_step=v[0], last_episode=v[1])
                  for name, v in sorted(envs.items())], is_last=True)),
        response(rl_family_declarations=response.RlFamilyDeclarations(
            families=list(families.values()), is_last=True)),
    ]


# --------------------------------------------------------------------------- updates

StoredRl = Callable[[tuple[Any, ...], int], tuple[int | None, tuple[int, int] | None]]


class RlBase:
    """Where an automatically numbered RL batch's minor steps start, per (series, rl_step).

    ``stored(key, rl_step)`` answers from the database for series the stream has not written
    yet (a new stream, a resent update after a restart): the first flat minor step stored at
    that rl_step, or None, and the last (rl_step, flat minor) of the series, or None.
    """

    def __init__(self, stored: StoredRl) -> None:
        self._stored = stored
        self._bases: dict[tuple[Any, ...], dict[int, int]] = {}
        self._last: dict[tuple[Any, ...], tuple[int, int] | None] = {}

    def base(self, key: tuple[Any, ...], rl_step: int, from_one: bool) -> int:
        bases = self._bases.setdefault(key, {})
        if rl_step in bases:
            return bases[rl_step]
        if key not in self._last or rl_step <= (self._last[key] or (-1, 0))[0]:
            first, last = self._stored(key, rl_step)
            self._last.setdefault(key, last)
            if first is not None:
                bases[rl_step] = first
                return first
        last = self._last[key]
        base = (last[1] + 1) if last is not None and last[0] < rl_step else int(from_one)
        bases[rl_step] = base
        return base

    def wrote(self, key: tuple[Any, ...], rl_step: int, last_minor: int) -> None:
        previous = self._last.get(key)
        if previous is None or (rl_step, last_minor) > previous:
            self._last[key] = (rl_step, last_minor)


def _values(batch: Any) -> Any:
    if batch.values_f32 and batch.values:
        raise GrpcError(Status.INVALID_ARGUMENT, "a batch has both values and values_f32")
    return batch.values_f32 or batch.values


def _timestamps(batch: Any, n: int, now_ms: int) -> Any:
    if batch.timestamps_millis:
        if len(batch.timestamps_millis) != n:
            raise GrpcError(Status.INVALID_ARGUMENT, f"a batch has {n} values but "
                            f"{len(batch.timestamps_millis)} timestamps")
        return batch.timestamps_millis
    return [batch.timestamp_millis if batch.HasField("timestamp_millis") else now_ms] * n


def _steps(given: Any, first: int, n: int, what: str) -> Any:
    if given:
        if len(given) != n:
            raise GrpcError(Status.INVALID_ARGUMENT, f"a batch has {n} values but {len(given)} "
                            f"{what}")
        return given
    return range(first, first + n)


@attrs.define
class _Columns:
    """One series' points of an update, gathered batch by batch as lists (the client sends a
    batch per log() call, often of one point) and made into arrays once."""

    entry: dict[str, Any]
    minors: list[int] = attrs.field(factory=list)
    majors: list[int] = attrs.field(factory=list)
    millis: list[int] = attrs.field(factory=list)
    values: list[float] = attrs.field(factory=list)

    def add(self, batch: Any, minors: Any, major: int, now_ms: int) -> None:
        values = _values(batch)
        n = len(values)
        self.minors.extend(minors)
        self.majors.extend([major] * n)
        self.millis.extend(_timestamps(batch, n, now_ms))
        self.values.extend(values)

    def finish(self, rl: bool) -> dict[str, Any]:
        # values_f32 reads back as the float64 equal to the float32 sent: stored exactly.
        values = np.array(self.values, dtype=np.float64)
        millis = np.array(self.millis, dtype=np.int64)
        if millis.shape[0] and (int(millis.max()) > 9_223_372_036_854
                                or int(millis.min()) < -9_223_372_036_854):
            raise GrpcError(Status.INVALID_ARGUMENT, "a timestamp is outside what this server "
                            "stores (int64 nanoseconds: 1677-09-21 to 2262-04-11)")
        steps = np.array(self.minors, dtype=np.uint64)
        majors = np.array(self.majors, dtype=np.uint64) if rl else steps
        return {**self.entry, "points": PointColumns(rl, steps, majors, millis * 1_000_000,
                                                     values)}


@attrs.define
class _Declared:
    metric_name: str
    scale: str
    labels: dict[str, str]
    ordering: int


class Declarations:
    """The series a stream declared (``declaration_id`` → identity); ids are per stream.

    ``writer`` is the stream's process (:func:`writer_name`): a series it declares unordered
    (``log_distributed``) is its own, labelled ``writer=<writer>``, as our client's
    ``log_distributed`` labels it, so processes logging the same steps never collide and the
    server serves the metric merged across them.
    """

    def __init__(self, writer: str) -> None:
        self.writer = writer
        self._by_id: dict[int, _Declared] = {}

    def add(self, declarations: Any) -> None:
        for d in declarations:
            if not d.metric_name or not d.scale:
                raise GrpcError(Status.INVALID_ARGUMENT, f"series declaration {d.declaration_id} "
                                "needs a metric_name and a scale")
            labels = dict(d.labels)
            if d.ordering == UNORDERED:
                if labels.get(WRITER_LABEL, self.writer) != self.writer:
                    raise GrpcError(Status.INVALID_ARGUMENT, f"log_distributed({d.metric_name!r}):"
                                    f" the label {WRITER_LABEL!r} is set by metrana serve (this "
                                    f"process's logger_id, {self.writer}); name yours otherwise")
                labels[WRITER_LABEL] = self.writer
            self._by_id[d.declaration_id] = _Declared(d.metric_name, d.scale, labels, d.ordering)

    def get(self, series_id: int) -> _Declared:
        found = self._by_id.get(series_id)
        if found is None:
            raise GrpcError(Status.INVALID_ARGUMENT, f"series_id {series_id} was not declared on "
                            "this stream (send its SeriesDeclaration first)")
        return found

    def name(self, series_id: int) -> str:
        found = self._by_id.get(series_id)
        return found.metric_name if found is not None else f"series_id {series_id}"


def _attribute(update: Any) -> dict[str, Any]:
    kind = update.WhichOneof("value")
    out: dict[str, Any] = {"path": update.path}
    if kind is None:
        return out  # the store refuses it, naming the path
    value = getattr(update, kind)
    if kind == "timestamp_value":
        out[kind] = value.ToNanoseconds()
    elif kind == "string_set_value":
        out[kind] = {"values": list(value.values)}
    elif kind == "string_set_delta_value":
        out[kind] = {"added_values": list(value.added_values),
                     "removed_values": list(value.removed_values)}
    else:
        out[kind] = value
    return out


ENV_PREFIX = "env"


def env_attributes(updates: Any) -> list[dict[str, Any]]:
    """``log_env_attributes`` (``EnvAttrUpdates``) as run attributes: an environment's current
    config under ``env/<environment_id>/<path>``, an episode's under
    ``env/<environment_id>/episode/<n>/<path>`` — what the dashboard's attribute columns,
    filters and ``metrana.query``'s ``fetch_runs(attributes=...)`` read, with no table of
    their own. A later update of a path replaces its value, as for run attributes."""
    out = []
    for update in updates:
        if not update.environment_id:
            raise GrpcError(Status.INVALID_ARGUMENT, "env_attr_updates: environment_id must "
                            "not be empty")
        prefix = f"{ENV_PREFIX}/{update.environment_id}/"
        if update.HasField("episode"):
            prefix += f"episode/{update.episode}/"
        for attribute in update.attributes:
            out.append({**_attribute(attribute), "path": prefix + attribute.path})
    return out


def _histograms(declared: _Declared, update: Any) -> dict[str, Any]:
    """A ``StreamingHistogramSeriesUpdate`` as the HTTP/JSON ``HistogramSeriesUpdate`` the
    store reads (it checks the points, as for HTTP)."""
    points = []
    for p in update.points:
        point: dict[str, Any] = {"step": p.step, "bin_edges": list(p.bin_edges),
                                 "counts": list(p.counts), "densities": list(p.densities)}
        if p.HasField("timestamp_millis"):
            point["timestamp_millis"] = p.timestamp_millis
        if p.HasField("stats"):
            point["stats"] = {"min": p.stats.min, "max": p.stats.max, "sum": p.stats.sum,
                              "sum_of_squares": p.stats.sum_of_squares}
        points.append(point)
    return {"metric_name": declared.metric_name, "scale": declared.scale,
            "labels": declared.labels, "points": points}


def _scatter(declared: _Declared, update: Any) -> dict[str, Any]:
    """A ``StreamingScatterSeriesUpdate`` as the HTTP/JSON ``ScatterSeriesUpdate``."""
    points = []
    for p in update.points:
        point: dict[str, Any] = {"step": p.step, "xs": list(p.xs), "ys": list(p.ys),
                                 "zs": list(p.zs)}
        if p.HasField("timestamp_millis"):
            point["timestamp_millis"] = p.timestamp_millis
        points.append(point)
    return {"metric_name": declared.metric_name, "scale": declared.scale,
            "labels": declared.labels, "metadata_labels": dict(update.metadata_labels),
            "is_3d": update.is_3d, "points": points}


def convert_update(run: RunKey, request: Any, declarations: Declarations, rl_base: RlBase
                   ) -> dict[str, Any]:
    """An ``UpdateRunRequest`` as the dict :meth:`.Store.update_runs` stores (one run update);
    environment attributes become run attributes (:func:`env_attributes`)."""
    declarations.add(request.series_declarations)
    now_ms = time.time_ns() // 1_000_000
    series: dict[int, _Columns] = {}
    for update in request.series:
        d = declarations.get(update.series_id)
        gathered = series.get(update.series_id)
        if gathered is None:
            gathered = series[update.series_id] = _Columns({
                "metric_name": d.metric_name, "scale": d.scale, "labels": d.labels,
                "ordering": d.ordering})
        for batch in update.point_batches:
            n = len(_values(batch))
            gathered.add(batch, _steps(batch.steps, batch.first_step, n, "steps"), 0, now_ms)
    rl_series: dict[tuple[Any, ...], _Columns] = {}
    for update in request.rl_series:
        d = declarations.get(update.series_id)
        for batch in update.rl_step_batches:
            n = len(_values(batch))
            episode = batch.episode if batch.HasField("episode") else None
            key = (d.metric_name, d.scale, labels_text(d.labels), update.environment_id, episode)
            gathered = rl_series.get(key)
            if gathered is None:
                entry: dict[str, Any] = {
                    "metric_name": d.metric_name, "scale": d.scale, "labels": d.labels,
                    "environment_id": update.environment_id, "ordering": d.ordering}
                if episode is not None:
                    entry["episode"] = episode
                gathered = rl_series[key] = _Columns(entry)
            first = batch.first_minor_step
            numbered = d.ordering == ORDERED and not batch.treat_minors_as_flat_steps \
                and not batch.minor_steps
            if numbered:
                first += rl_base.base(key, batch.rl_step, batch.env_steps_from_one)
            minors = _steps(batch.minor_steps, first, n, "minor_steps")
            if numbered and n:
                rl_base.wrote(key, batch.rl_step, first + n - 1)
            gathered.add(batch, minors, batch.rl_step, now_ms)
    part: dict[str, Any] = {
        "workspace": run.workspace, "project": run.project, "run_name": run.run_name,
        "series": [g.finish(False) for g in series.values()],
        "rl_series": [g.finish(True) for g in rl_series.values()],
        "attributes": [_attribute(a) for a in request.attributes]
        + env_attributes(request.env_attr_updates),
        "histogram_series": [_histograms(declarations.get(s.series_id), s)
                             for s in request.histogram_series],
        "scatter_series": [_scatter(declarations.get(s.series_id), s)
                           for s in request.scatter_series],
    }
    if request.HasField("close_run"):
        part["close_run"] = {}
    return {"session_id": request.logger_session_id, "run_updates": [part]}

"""A run's spool: segments, records and the bound, exactly; what a session counts as spooled
or failed; and ``metrana sync`` against a real server (the run's config, segments a running
logger still holds). The files themselves: tests/client/test_spool.py."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

import metrana
import metrana._spool as spool_module
from metrana._actors.parcel import Parcel
from metrana._exceptions import MetranaSpoolError
from metrana._run_spool import RunSpool
from metrana._series import SeriesKey
from metrana._spool import (
    DEFAULT_SPOOL_MAX_BYTES,
    MANIFEST,
    Damage,
    SpoolFullError,
    SpoolWriter,
    _component,
    decode_record,
    is_locked,
    read_manifest,
    read_segment,
    run_directories,
    segments,
    write_manifest,
)
from metrana._stats import Counters
from metrana.server import ServerInfo
from tests.helpers import read_points

KEY = SeriesKey(False, "loss", "ML_STEP", ())


class State:
    """What the StepCounter hands the spool per series (key and manual flag)."""

    def __init__(self, key: SeriesKey, manual: bool = False) -> None:
        self.key, self.manual = key, manual


def parcel(values: range, state: State | None = None) -> Parcel:
    items = [(0, None, None, float(v), 10**18 + v) for v in values]
    return [(state or State(KEY), [(values.start, items)])]


# ------------------------------------------------------------------------ SpoolWriter

def test_the_default_bound_is_4_gib() -> None:
    assert DEFAULT_SPOOL_MAX_BYTES == 4 * 1024**3 == 4_294_967_296
    assert SpoolWriter(Path("x")).max_bytes == DEFAULT_SPOOL_MAX_BYTES


def test_records_are_length_and_checksum_prefixed(tmp_path: Path) -> None:
    import zlib

    writer = SpoolWriter(tmp_path)
    writer.append(b"hello")
    writer.append(b"")
    writer.close()
    (segment,) = segments(tmp_path)
    assert segment.read_bytes() == (
        (5).to_bytes(4, "big") + zlib.crc32(b"hello").to_bytes(4, "big") + b"hello"
        + (0).to_bytes(4, "big") + zlib.crc32(b"").to_bytes(4, "big"))
    assert list(read_segment(segment)) == [b"hello", b""]


def test_segments_are_named_by_time_process_and_sequence(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    for payload in (b"a", b"b"):
        writer.append(payload)
        writer.rotate()
    names = [p.name for p in segments(tmp_path)]
    assert [name.split("-")[1:] for name in names] == [[str(os.getpid()), "000001.seg"],
                                                       [str(os.getpid()), "000002.seg"]]
    assert all(len(name.split("-")[0]) == 20 for name in names)


def test_a_segment_is_closed_once_it_reaches_its_size(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The next record once a segment holds SEGMENT_BYTES (or more) goes to a new segment,
    and the full one is released (replayable); all read back in order."""
    monkeypatch.setattr(spool_module, "SEGMENT_BYTES", 36)
    writer = SpoolWriter(tmp_path)
    for i in range(5):
        writer.append(b"%010d" % i)  # 18 bytes a record: two fill a segment exactly
        assert writer.active_records == (1 if i % 2 == 0 else 2)
    full = segments(tmp_path)[:2]
    assert [is_locked(p) for p in segments(tmp_path)] == [False, False, True]
    writer.close()
    assert writer.active_records == 0 and is_locked(segments(tmp_path)[2]) is False
    assert [list(read_segment(p)) for p in full] == [[b"%010d" % 0, b"%010d" % 1],
                                                     [b"%010d" % 2, b"%010d" % 3]]
    assert list(read_segment(segments(tmp_path)[2])) == [b"%010d" % 4]
    assert writer.used_bytes() == 5 * 18


def test_segments_are_private_and_their_directories_made(tmp_path: Path) -> None:
    """Points may be confidential: segments are readable by their owner only; the run's
    directories are created as needed (for the manifest too)."""
    writer = SpoolWriter(tmp_path / "ws" / "proj" / "run")
    writer.append(b"x")
    writer.rotate()
    (segment,) = segments(tmp_path / "ws" / "proj" / "run")
    assert segment.stat().st_mode & 0o777 == 0o600
    write_manifest(tmp_path / "other" / "deep" / "run", {"run_name": "r"})
    assert read_manifest(tmp_path / "other" / "deep" / "run") == {"run_name": "r"}


def test_a_large_record_reads_back(tmp_path: Path) -> None:
    """Records are bounded only by a sanity limit (512 MiB): 3 MiB is nothing special."""
    payload = b"y" * (3 * 1024**2)
    writer = SpoolWriter(tmp_path)
    writer.append(payload)
    writer.close()
    assert list(read_segment(segments(tmp_path)[0])) == [payload]


def test_a_short_write_is_an_error_and_cut_back(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that takes only part of a record (a full disk) fails the append; the part is
    cut off, so the next record is readable right after the last whole one."""
    writer = SpoolWriter(tmp_path)
    writer.append(b"first")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:6]))
    with pytest.raises(OSError, match=r"short write to .* \(6 of 14 bytes\)"):
        writer.append(b"second")
    monkeypatch.undo()
    writer.append(b"third")
    writer.close()
    assert [list(read_segment(p)) for p in segments(tmp_path)] == [[b"first", b"third"]]


def test_the_bound_counts_every_segment_and_is_inclusive(tmp_path: Path) -> None:
    """A record that fills the spool exactly fits; one byte more does not."""
    writer = SpoolWriter(tmp_path, max_bytes=3 * 18)
    writer.append(b"%010d" % 0)
    writer.rotate()
    writer.append(b"%010d" % 1)
    with pytest.raises(SpoolFullError, match=r"would exceed spool_max_bytes=54"):
        writer.append(b"%011d" % 2)
    writer.append(b"%010d" % 2)
    assert writer.used_bytes() == 54 and writer.active_records == 2
    with pytest.raises(SpoolFullError):
        writer.append(b"")


def test_a_failed_write_is_cut_back_and_the_segment_goes_on(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync fails once (a disk error): the record does not count, the file is back to its
    last whole record, and the next record lands after it, readable."""
    writer = SpoolWriter(tmp_path)
    writer.append(b"first")
    real_fsync = os.fsync
    calls = {"n": 0}

    def failing(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(OSError, match="Input/output"):
        writer.append(b"second")
    assert writer.active_records == 1
    writer.append(b"third")
    writer.close()
    (segment,) = segments(tmp_path)
    assert list(read_segment(segment)) == [b"first", b"third"]


def test_when_even_the_repair_fails_the_segment_is_given_up(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk cannot even take the cut back (fsync keeps failing): the segment is closed
    as it is (released, so what is whole in it is replayed) and the next record starts a new
    one."""
    writer = SpoolWriter(tmp_path)
    writer.append(b"first")

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken)
    with pytest.raises(OSError):
        writer.append(b"second")
    monkeypatch.undo()
    assert writer.active_records == 0
    (abandoned,) = segments(tmp_path)
    assert is_locked(abandoned) is False
    writer.append(b"third")
    writer.close()
    first, second = segments(tmp_path)
    assert list(read_segment(second)) == [b"third"]
    assert list(read_segment(first))[0] == b"first"  # what was whole is kept


def test_damage_is_located_exactly(tmp_path: Path) -> None:
    """A bad checksum skips one record; a length past the end or a torn header ends the
    segment there; an unreadable file is one Damage; each says where."""
    writer = SpoolWriter(tmp_path)
    for payload in (b"aaaa", b"bbbb", b"cccc"):
        writer.append(payload)
    writer.close()
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[12 + 8] ^= 1  # b"bbbb"
    segment.write_bytes(bytes(data))
    assert [str(x) if isinstance(x, Damage) else x for x in read_segment(segment)] == [
        b"aaaa", f"spool segment {segment} is damaged at byte 12: checksum mismatch; record "
                 "skipped", b"cccc"]
    segment.write_bytes(bytes(data[:24 + 9]))  # the third record's header and one byte
    items = list(read_segment(segment))
    assert isinstance(items[-1], Damage) and (items[-1].offset, items[-1].reason) == (
        24, "torn or corrupt record (length runs past the end)")
    segment.write_bytes(bytes(data[:24 + 7]))  # less than a header (8 bytes)
    last = list(read_segment(segment))[-1]
    assert isinstance(last, Damage) and (last.offset, last.reason) == (
        24, "torn record header (the writer stopped mid-write)")
    huge = (512 * 1024**2 + 1).to_bytes(4, "big") + bytes(4) + b"x" * 10
    segment.write_bytes(huge)
    (only,) = read_segment(segment)
    assert isinstance(only, Damage) and only.offset == 0 and "torn or corrupt" in only.reason
    directory = tmp_path / "a.seg"
    directory.mkdir()
    (unreadable,) = read_segment(directory)
    assert isinstance(unreadable, Damage) and unreadable.reason.startswith("cannot read")
    assert unreadable.offset == 0


def test_listing_and_locks_of_what_is_not_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "1-1-1.seg.tmp").write_text("x")
    assert segments(tmp_path) == [] and segments(tmp_path / "missing") == []
    assert is_locked(tmp_path / "missing.seg") is False


def test_manifests_are_replaced_whole_and_unreadable_ones_ignored(tmp_path: Path) -> None:
    write_manifest(tmp_path / "run", {"run_name": "a"})
    write_manifest(tmp_path / "run", {"run_name": "b"})
    assert read_manifest(tmp_path / "run") == {"run_name": "b"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [MANIFEST]
    (tmp_path / "run" / MANIFEST).write_text("{not json")
    assert read_manifest(tmp_path / "run") is None and read_manifest(tmp_path) is None
    assert run_directories(tmp_path / "run") == [tmp_path / "run"]
    assert run_directories(tmp_path / "elsewhere") == []


def test_directory_names_keep_a_readable_prefix() -> None:
    digest_of = {name: _component(name).rsplit("-", 1)[1] for name in ("exp AC", "x", ".")}
    assert all(len(d) == 20 for d in digest_of.values())
    assert _component("exp AC") == "exp_AC-" + digest_of["exp AC"]
    assert _component(".") == "_-" + digest_of["."] and _component(".x.") == \
        "x-" + _component(".x.").rsplit("-", 1)[1]
    assert _component("é" * 50).startswith("_" * 40 + "-")
    assert _component("a" * 41).startswith("a" * 40 + "-")


# --------------------------------------------------------------------------- RunSpool

def run_spool(directory: Path | None, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
              ) -> tuple[RunSpool, Counters, list[BaseException]]:
    counters, reported = Counters(), list[BaseException]()
    spool = RunSpool(directory, max_bytes, {"run_name": "r", "workspace": "w"}, 99, counters,
                     reported.append)
    return spool, counters, reported


def test_points_count_as_spooled_once_their_record_is_on_disk(tmp_path: Path) -> None:
    """The manifest is written before the first record; each write is one record of the
    session; spooled counts exactly the points written."""
    spool, counters, reported = run_spool(tmp_path / "run")
    assert spool.enabled and not spool.waiting() and spool.empty()
    spool.write([parcel(range(0, 3)) + parcel(range(0, 2), State(KEY, manual=True))], 5)
    spool.write([parcel(range(3, 4))], 1)
    assert (counters.spooled, counters.failed, reported) == (6, 0, [])
    assert read_manifest(tmp_path / "run") == {"run_name": "r", "workspace": "w"}
    assert not spool.waiting() and not spool.empty()  # our open segment: not replayable yet
    spool.rotate()
    assert spool.waiting() and not spool.empty()
    (segment,) = segments(tmp_path / "run")
    records = [decode_record(r) for r in read_segment(segment) if isinstance(r, bytes)]
    assert [(session, [(key.name, manual, [p[:3] for p in points])
                       for key, manual, points in series]) for session, series in records] == [
        (99, [("loss", False, [(0, None, 0.0), (1, None, 1.0), (2, None, 2.0)]),
              ("loss", True, [(0, None, 0.0), (1, None, 1.0)])]),
        (99, [("loss", False, [(3, None, 3.0)])])]
    spool.close()


def test_the_manifest_is_written_once_per_session(tmp_path: Path) -> None:
    spool, _, _ = run_spool(tmp_path / "run")
    spool.write_manifest()
    (tmp_path / "run" / MANIFEST).write_text('{"run_name": "edited"}')
    spool.write([parcel(range(1))], 1)
    assert read_manifest(tmp_path / "run") == {"run_name": "edited"}


def test_without_a_spool_points_that_cannot_be_sent_are_failed(tmp_path: Path) -> None:
    spool, counters, reported = run_spool(None)
    spool.write([parcel(range(4))], 4)
    spool.write_manifest()
    spool.rotate()
    spool.close()
    assert (spool.enabled, spool.waiting(), spool.empty()) == (False, False, True)
    assert (counters.failed, counters.spooled, reported) == (4, 0, [])


def test_a_full_spool_fails_the_points_says_so_and_keeps_what_is_on_disk(tmp_path: Path) -> None:
    spool, counters, reported = run_spool(tmp_path / "run", max_bytes=200)
    spool.write([parcel(range(2))], 2)
    before = [p.read_bytes() for p in segments(tmp_path / "run")]
    spool.write([parcel(range(2, 100))], 98)
    assert (counters.spooled, counters.failed) == (2, 98)
    (error,) = reported
    assert isinstance(error, MetranaSpoolError)
    assert str(error).startswith("98 points could be neither delivered nor spooled: the spool "
                                 "at ")
    assert [p.read_bytes() for p in segments(tmp_path / "run")] == before


# --------------------------------------------------------------- metrana sync, end to end

def new_run() -> str:
    return f"run-{uuid.uuid4().hex[:8]}"


def test_sync_creates_the_run_with_its_config_experiment_and_rules(
        live_server: ServerInfo, spool_root: Path) -> None:
    """An offline run's config, experiment and aggregation rules reach the service with its
    points when it is synced."""
    import httpx

    name = new_run()
    with metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                         mode="offline", experiment_name="sweep-3", log_level="Off",
                         config={"lr": 0.001, "optimizer": {"name": "adam", "betas": [0.9, 0.99]},
                                 "epochs": 10, "amp": True},
                         aggregation_rules=[{"metric_name": "return", "source_scale": "EPISODE",
                                             "output_scale": "EPISODE",
                                             "fns": ["AGGREGATION_FN_MEAN"]}]) as run:
        run.log("loss", 0.5)
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert (report.runs, report.delivered, report.errors) == (1, 1, ())
    detail = httpx.get(f"{live_server.url}/api/runs/ws/proj/{name}").json()
    assert detail["experiment"] == "sweep-3"
    assert detail["attributes"] == {
        "config/amp": {"kind": "bool", "value": True},
        "config/epochs": {"kind": "int", "value": 10},
        "config/lr": {"kind": "float", "value": 0.001},
        "config/optimizer/betas/0": {"kind": "float", "value": 0.9},
        "config/optimizer/betas/1": {"kind": "float", "value": 0.99},
        "config/optimizer/name": {"kind": "string", "value": "adam"},
    }
    assert detail["aggregation_rules"] == [{"metric_name": "return", "source_scale": "EPISODE",
                                            "output_scale": "EPISODE",
                                            "fns": ["AGGREGATION_FN_MEAN"]}]
    assert [p["value"] for p in read_points(live_server, name)["loss"]] == [0.5]


def test_sync_leaves_segments_a_running_logger_holds(live_server: ServerInfo,
                                                     spool_root: Path) -> None:
    """A logger still writing its segment: sync delivers nothing of it, says so, and leaves
    it on disk; once the logger has closed, sync delivers every point exactly once."""
    name = new_run()
    run = metrana.session(workspace_name="ws", project_name="proj", run_name=name,
                          mode="offline", log_level="Off")
    for i in range(100):
        run.log("loss", float(i))
    run.flush()  # durable, in the segment the logger holds open
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert (report.delivered, report.segments_in_use) == (0, 1)
    for i in range(100, 150):
        run.log("loss", float(i))
    run.close()
    report = metrana.sync(spool_root, ingestion_url=live_server.url)
    assert (report.delivered, report.segments_in_use) == (150, 0)
    assert [p["value"] for p in read_points(live_server, name)["loss"]] == [
        float(i) for i in range(150)]

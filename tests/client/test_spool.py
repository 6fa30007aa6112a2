"""The spool's files: records that read back exactly, damage that is skipped and said, a
writer that never leaves a half record, names that are one directory per run."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from metrana._series import SeriesKey
from metrana._spool import (
    Damage,
    SpoolFullError,
    SpoolWriter,
    decode_record,
    encode_record,
    is_locked,
    read_manifest,
    read_segment,
    run_directories,
    run_spool_dir,
    segments,
    write_manifest,
)

KEY = SeriesKey(True, "reward", "ENVIRONMENT_STEP", (("agent", "a"),), "env-3", 12)


def test_a_record_reads_back_as_it_was_written() -> None:
    """Series identity (RL fields and labels), the manual flag and every point survive."""
    points = [(0, 5, 1.5, 10**18), (1, 5, float("inf"), 10**18 + 1), (2, 6, -0.0, 2)]
    session, series = decode_record(encode_record(2**64 - 1, [(KEY, True, points)]))
    (key, manual, back), = series
    assert session == 2**64 - 1 and manual is True
    assert key.identity == KEY.identity
    assert [tuple(p) for p in back] == points


def test_segments_are_listed_oldest_first(tmp_path: Path) -> None:
    """Writers name segments by time: replaying in name order is replaying in time order."""
    writer = SpoolWriter(tmp_path)
    for i in range(3):
        writer.append(b"%d" % i)
        writer.rotate()
    assert [list(read_segment(p)) for p in segments(tmp_path)] == [[b"0"], [b"1"], [b"2"]]


def test_a_corrupt_record_is_skipped_and_a_torn_tail_ends_the_segment(tmp_path: Path) -> None:
    """A flipped byte: that record is a Damage (checksum), the next one reads; a cut-off tail
    is a Damage (torn) and nothing after it is guessed at."""
    writer = SpoolWriter(tmp_path)
    for payload in (b"first", b"second", b"third"):
        writer.append(payload)
    writer.close()
    (segment,) = segments(tmp_path)
    data = bytearray(segment.read_bytes())
    data[8 + 1] ^= 0xFF  # inside "first"
    segment.write_bytes(bytes(data[:-3]))  # and "third" loses its end
    items = list(read_segment(segment))
    assert isinstance(items[0], Damage) and "checksum" in str(items[0])
    assert items[1] == b"second"
    assert isinstance(items[2], Damage) and "torn" in str(items[2])


def test_the_spool_bound_refuses_a_record_and_changes_nothing(tmp_path: Path) -> None:
    """spool_max_bytes: SpoolFullError before writing; what is on disk stays as it was."""
    writer = SpoolWriter(tmp_path, max_bytes=100)
    writer.append(b"x" * 50)
    before = {p: p.read_bytes() for p in segments(tmp_path)}
    with pytest.raises(SpoolFullError, match="spool_max_bytes"):
        writer.append(b"y" * 50)
    assert {p: p.read_bytes() for p in segments(tmp_path)} == before
    assert writer.active_records == 1


def test_a_segment_being_written_is_locked_and_released_on_rotate(tmp_path: Path) -> None:
    """Another process replaying the run leaves a live writer's segment alone."""
    writer = SpoolWriter(tmp_path)
    writer.append(b"x")
    (segment,) = segments(tmp_path)
    assert is_locked(segment)
    fd = os.open(segment, os.O_RDONLY)
    with pytest.raises(BlockingIOError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    writer.rotate()
    assert is_locked(segment) is False and writer.active_records == 0


def test_an_empty_segment_is_not_left_behind(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path)
    writer.append(b"x")
    writer.rotate()
    writer._open()  # a segment opened, then closed with nothing in it
    writer.rotate()
    assert len(segments(tmp_path)) == 1


def test_run_directories_are_one_to_one_bounded_and_found_by_manifest(tmp_path: Path) -> None:
    """Names that escaped alike get their own directories; any length fits a file system;
    sync finds runs by their run.json, which holds the exact names."""
    names = ["exp AC", "exp€", "exp%20AC", "a/b", "a_b", ".", "..", "r" * 300, ""]
    dirs = [run_spool_dir(tmp_path, "ws", "proj", n) for n in names]
    assert len(set(dirs)) == len(names)
    for directory, name in zip(dirs, names, strict=True):
        assert all(0 < len(part) <= 64 and part not in (".", "..")
                   for part in directory.relative_to(tmp_path).parts)
        write_manifest(directory, {"workspace": "ws", "project": "proj", "run_name": name})
    assert sorted(run_directories(tmp_path)) == sorted(dirs)
    assert {read_manifest(d)["run_name"] for d in dirs} == set(names)  # type: ignore[index]

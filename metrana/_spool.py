"""The disk spool: where points go when the service cannot take them, so none is lost.

Layout: ``<spool_dir>/<workspace>/<project>/<run>/`` holds ``run.json`` (what is needed to
create the run and send its config) and segment files ``<time_ns>-<pid>-<seq>.seg``, appended
by one writer each and replayed in name order (oldest first, so per-series order holds across
processes too).

A segment is a sequence of records, each ``length (4 bytes, big endian) | crc32 (4 bytes) |
payload (JSON)``, written with one ``write`` and ``fsync``'d before the write counts as
durable. A reader that meets a torn or corrupt record reports it and skips it (a bad checksum)
or the rest of that segment (a bad length); it never fails and never blocks other segments.
A writer holds an exclusive ``flock`` on its open segment so another process replaying the
same run leaves it alone until the writer is gone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs

from ._series import SeriesKey
from ._values import value_from_record, value_record

__all__ = [
    "DEFAULT_SPOOL_MAX_BYTES",
    "Damage",
    "SpoolFullError",
    "SpoolWriter",
    "decode_record",
    "encode_record",
    "read_manifest",
    "read_segment",
    "remove_run_directory",
    "run_spool_dir",
    "segments",
    "write_manifest",
]

DEFAULT_SPOOL_MAX_BYTES = 4 * 1024**3
SEGMENT_BYTES = 64 * 1024**2
_HEADER = struct.Struct(">II")
_MAX_RECORD = 512 * 1024**2
MANIFEST = "run.json"

# (step, major, value, ts): the value a float, or a histogram or cloud (metrana._values).
Point = tuple[int, "int | None", Any, int]
SeriesPoints = tuple[SeriesKey, bool, Sequence[Point]]


class SpoolFullError(OSError):
    """Writing would exceed ``spool_max_bytes``; nothing on disk was changed."""


@attrs.frozen
class Damage:
    """A record that could not be read back: where, and why."""

    path: Path
    offset: int
    reason: str

    def __str__(self) -> str:
        return f"spool segment {self.path} is damaged at byte {self.offset}: {self.reason}"


_PREFIX_CHARS = 40


def _component(name: str) -> str:
    """A directory name for ``name``: a readable prefix and a hash of the exact name.

    One-to-one (two names share a directory only if their 80-bit hashes collide) and bounded
    (at most 61 bytes, whatever the name); the exact names are kept in ``run.json``.
    """
    prefix = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_"
                     for c in name[:_PREFIX_CHARS]).strip(".") or "_"
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=10).hexdigest()
    return f"{prefix}-{digest}"


def run_spool_dir(root: Path, workspace: str, project: str, run_name: str) -> Path:
    return root / _component(workspace) / _component(project) / _component(run_name)


def _series_record(key: SeriesKey, manual: bool, points: Sequence[Point]) -> list[Any]:
    record: list[Any] = [key.rl, key.name, key.scale, [list(p) for p in key.labels], key.env_id,
                         key.episode, manual]
    if not key.kind:
        record.append([list(point) for point in points])
        return record
    # A histogram's or cloud's series adds its kind and axis titles (older records end at
    # the points); its values are spelt by metrana._values.
    record.append([[step, major, value_record(value), ts] for step, major, value, ts in points])
    record += [key.kind, [list(p) for p in key.meta]]
    return record


def encode_record(session_id: int, series: Sequence[SeriesPoints]) -> bytes:
    payload = {
        "session": session_id,
        "series": [_series_record(key, manual, points) for key, manual, points in series],
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def decode_record(payload: bytes) -> tuple[int, list[SeriesPoints]]:
    data = json.loads(payload)
    series: list[SeriesPoints] = []
    for rl, name, scale, labels, env_id, episode, manual, points, *valued in data["series"]:
        key = SeriesKey(bool(rl), name, scale, tuple((k, v) for k, v in labels), env_id, episode)
        if valued:
            key.kind, key.meta = int(valued[0]), tuple((k, v) for k, v in valued[1])
            points = [(step, major, value_from_record(value), ts)
                      for step, major, value, ts in points]
        series.append((key, bool(manual), [tuple(p) for p in points]))
    return int(data["session"]), series


def segments(directory: Path) -> list[Path]:
    """Segment files of one run directory, oldest first."""
    try:
        return sorted(p for p in directory.iterdir() if p.suffix == ".seg")
    except OSError:  # missing, not a directory, unreadable: nothing to replay from here
        return []


def lock_segment(path: Path) -> int | None:
    """An open file descriptor holding the segment's lock, or None when a live writer (or a
    replayer) holds it, or it is gone. Closing the descriptor releases the lock."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_locked(path: Path) -> bool:
    """True when a live writer (another process, or another writer here) holds the segment."""
    fd = lock_segment(path)
    if fd is None:
        return path.exists()
    os.close(fd)  # closing drops the probe lock
    return False


def read_segment(path: Path) -> Iterator[bytes | Damage]:
    """Yield each intact record's payload, and a Damage for what cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        yield Damage(path, 0, f"cannot read: {exc}")
        return
    offset = 0
    while offset < len(data):
        if len(data) - offset < _HEADER.size:
            yield Damage(path, offset, "torn record header (the writer stopped mid-write)")
            return
        length, checksum = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        if length > _MAX_RECORD or start + length > len(data):
            yield Damage(path, offset, "torn or corrupt record (length runs past the end)")
            return
        payload = data[start:start + length]
        if zlib.crc32(payload) != checksum:
            yield Damage(path, offset, "checksum mismatch; record skipped")
        else:
            yield payload
        offset = start + length


class SpoolWriter:
    """Appends records to this process's segments of one run directory."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_SPOOL_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._records = 0
        self._seq = 0

    @property
    def active_records(self) -> int:
        return self._records

    def used_bytes(self) -> int:
        total = 0
        for path in segments(self.directory):
            try:
                total += path.stat().st_size
            except FileNotFoundError:
                pass
        return total

    def append(self, payload: bytes) -> None:
        """Write one record durably, or leave the segment as it was and raise.

        Raises SpoolFullError or OSError. A failed write (a full disk, a file size limit) may
        have left part of the record behind: it is cut off again, so records appended later
        stay readable; if even that fails, the segment is abandoned and the next record
        starts a new one. The record counts only once it is written whole and fsync'd.
        """
        record = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        if self.used_bytes() + len(record) > self.max_bytes:
            raise SpoolFullError(
                f"the spool at {self.directory} would exceed spool_max_bytes={self.max_bytes:,}"
            )
        if self._fd is None or self._size >= SEGMENT_BYTES:
            self.rotate()
            self._open()
        assert self._fd is not None
        try:
            written = os.write(self._fd, record)
            if written != len(record):
                raise OSError(f"short write to {self._path} ({written} of {len(record)} bytes)")
            os.fsync(self._fd)
        except OSError:
            self._repair()
            raise
        self._size += len(record)
        self._records += 1

    def _repair(self) -> None:
        """After a failed write: back to the last whole record, or give up on the segment."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
        except OSError:
            os.close(self._fd)  # keep what is whole in it; later records go to a new segment
            self._fd, self._path, self._size, self._records = None, None, 0, 0

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._seq += 1
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.seg"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path, self._size, self._records = fd, path, 0, 0

    def rotate(self) -> None:
        """Close the open segment (so it can be replayed); an empty one is removed."""
        if self._fd is None:
            return
        os.close(self._fd)
        if self._records == 0 and self._path is not None:
            self._path.unlink(missing_ok=True)
        self._fd, self._path, self._size, self._records = None, None, 0, 0

    def close(self) -> None:
        self.rotate()


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{MANIFEST}.{os.getpid()}"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, directory / MANIFEST)


def read_manifest(directory: Path) -> dict[str, Any] | None:
    try:
        return json.loads((directory / MANIFEST).read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):  # missing, unreadable, not JSON: no manifest to go by
        return None


def remove_run_directory(directory: Path, root: Path) -> None:
    """Remove a delivered run's manifest, then the directories from it up to ``root`` that
    this leaves empty — not ``root`` itself (the path sync was given stays). Anything else
    found there (a segment a writer just started) keeps the directory."""
    if segments(directory):
        return
    (directory / MANIFEST).unlink(missing_ok=True)
    current = directory
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:  # not empty (or already gone): stop here
            return
        current = current.parent


def run_directories(root: Path) -> list[Path]:
    """Every run directory under ``root`` (or ``root`` itself), found by its manifest."""
    if (root / MANIFEST).exists():
        return [root]
    return sorted(p.parent for p in root.rglob(MANIFEST))

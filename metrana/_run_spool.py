"""One run's spool, as the engine's actors use it: write points durably, or count them failed.

:mod:`._spool` defines the files (segments, records, the manifest); this is the run's side of
it — the one writer of this session, the manifest written before the first record, and the
counting rule: a point is ``spooled`` only once its record is whole and fsync'd, and
``failed`` (reported) when it can be neither sent nor written.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._actors.parcel import Parcel, spool_points
from ._exceptions import MetranaSpoolError
from ._spool import (
    MANIFEST,
    SpoolWriter,
    encode_record,
    lock_segment,
    read_manifest,
    segments,
    write_manifest,
)
from ._stats import Counters

__all__ = ["RunSpool"]


class RunSpool:
    def __init__(self, directory: Path | None, max_bytes: int, manifest: dict[str, Any],
                 session_id: int, counters: Counters,
                 report: Callable[[BaseException], None]) -> None:
        self.directory = directory
        self.writer = SpoolWriter(directory, max_bytes) if directory is not None else None
        self._manifest = manifest
        self._manifest_written = False
        self._session_id = session_id
        self._counters = counters
        self._report = report

    @property
    def enabled(self) -> bool:
        return self.writer is not None

    def write_manifest(self) -> None:
        """Before the first record, and again if it went missing (a ``metrana sync`` removed
        the run's directory once it was delivered): segments are never left without it."""
        if self.directory is not None and not (
                self._manifest_written and (self.directory / MANIFEST).exists()):
            write_manifest(self.directory, self._manifest)
            self._manifest_written = True

    def write(self, parcels: list[Parcel], count: int) -> None:
        """Write points durably (one record), or count them as failed and say why."""
        if self.writer is None:
            self._counters.failed += count
            return
        series = [(state.key, state.manual, spool_points(spans))
                  for parcel in parcels for state, spans in parcel]
        try:
            self.write_manifest()
            self.writer.append(encode_record(self._session_id, series))
        except OSError as exc:
            self._counters.failed += count
            self._report(MetranaSpoolError(
                f"{count:,} points could be neither delivered nor spooled: {exc}"))
            return
        self._counters.spooled += count

    def waiting(self) -> bool:
        """Records on disk that Recovery could replay now (not held by a live writer)."""
        if self.directory is None:
            return False
        for path in segments(self.directory):
            fd = lock_segment(path)
            if fd is not None:
                os.close(fd)
                return True
        return False

    def reopen(self) -> None:
        """A new session of the run begins: a close an earlier session recorded (for
        ``metrana sync`` to send once the spool is delivered) no longer holds."""
        if self.directory is not None:
            manifest = read_manifest(self.directory)
            if manifest is not None and manifest.get("closed"):
                write_manifest(self.directory, self._manifest)

    def record_close(self) -> None:
        """The run was closed while points of it wait here: ``metrana sync`` tells the service
        once it has delivered them all (so the run then shows finished, not idle)."""
        if self.directory is not None and self.directory.exists():
            write_manifest(self.directory, {**self._manifest, "closed": True})

    def empty(self) -> bool:
        """Nothing of this run waits on disk: no open record of ours, no segment to replay."""
        return (self.writer is None or self.writer.active_records == 0) and not self.waiting()

    def rotate(self) -> None:
        """Close our open segment, so Recovery can replay it."""
        if self.writer is not None:
            self.writer.rotate()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

"""What ``metrana import`` shows: progress bars while it works, a table when it is done.

The bars (tqdm: one for the runs, one for the points of the run being imported) go to stderr
and only when it is a terminal; the table and totals go to stdout, so a script or a log file
gets the summary without the bars.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

from .loader import RunReport

__all__ = ["Bars", "summary"]

_SKIP_REASONS = {
    "histograms": "not readable as a histogram: see the notes",
    "images": "not metrics",
    "audio": "not metrics",
    "text": "not metrics",
}


class Bars:
    """Progress over runs and over the current run's points (off when stderr is not a
    terminal)."""

    def __init__(self, runs: int, stream: TextIO | None = None) -> None:
        from tqdm import tqdm

        self._stream = stream or sys.stderr
        self._tqdm = tqdm
        self._runs = tqdm(total=runs, unit="run", desc="runs", position=0, file=self._stream,
                          disable=None, leave=False)
        self._points: Any = None

    @contextmanager
    def run(self, name: str, points: int) -> Iterator[Any]:
        """A bar for one run's points; yields the function the loader reports progress to."""
        bar = self._tqdm(total=points, unit="pt", unit_scale=True, desc=name[:40], position=1,
                         file=self._stream, disable=None, leave=False)
        try:
            yield bar.update
        finally:
            bar.close()
            self._runs.update(1)

    def close(self) -> None:
        self._runs.close()


def _kinds(skipped: Counter[str]) -> str:
    return ", ".join(f"{kind} {count:,}" for kind, count in sorted(skipped.items())) or "-"


def summary(reports: Sequence[RunReport], where: str, seconds: float, out: TextIO) -> None:
    """The table of runs, the totals, what was skipped and why, and notes."""
    if not reports:
        return
    rows = [("RUN", "", "SERIES", "IMPORTED", "ALREADY STORED", "SKIPPED")] + [
        (r.name, "resumed" if r.resumed else "new", f"{r.series:,}", f"{r.points:,}",
         f"{r.already:,}", _kinds(r.skipped)) for r in reports]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.rjust(w) if i in (2, 3, 4) else cell.ljust(w)
                            for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
                  + "\n")
    points = sum(r.points for r in reports)
    already = sum(r.already for r in reports)
    series = sum(r.series for r in reports)
    rate = f" ({points / seconds:,.0f} points/s)" if points and seconds > 0 else ""
    out.write(f"\nimported {points:,} points of {series:,} series in {len(reports)} run(s) into "
              f"{where} in {seconds:.1f}s{rate}")
    out.write(f"; {already:,} were already stored (imported before) and not sent again\n"
              if already else "\n")
    skipped: Counter[str] = Counter()
    for r in reports:
        skipped.update(r.skipped)
    for kind, count in sorted(skipped.items()):
        reason = _SKIP_REASONS.get(kind, "not imported")
        out.write(f"skipped {count:,} {kind} ({reason})\n")
    superseded = sum(r.superseded for r in reports)
    if superseded:
        out.write(f"{superseded:,} points were logged again at a step they already had (or "
                  "before a restart of their job): the value written later was imported\n")
    for r in reports:
        for note in r.notes:
            out.write(f"note: {r.name}: {note}\n")

"""Logging a source's runs into metrana: through ``metrana.session``, once, resumably.

Each run is an ordinary session (batching, retries, the spool), logging its series as
vectorized calls with explicit steps and the source's timestamps. What makes a rerun safe:

- **Matching.** Every imported run carries ``import/source`` (``tensorboard:<logdir>:<run
  dir>``, ``mlflow:<tracking uri>:<run id>``). Before importing, the project's runs are listed
  once; a run whose ``import/source`` matches is resumed, whatever its name. A new run takes
  the source's name, or ``<name>-imported`` (``-imported-2``, ...) when a run of the project
  already has it.
- **Resuming.** The server identifies a manual-step point by its series, session *and* step,
  so a second session logging a step again would store it twice. A resumed run therefore
  first delivers what an interrupted import left in its spool (:func:`metrana.sync`), then
  reads each series' last stored step (``metrana.query``'s ``list_series``) and logs only the
  points after it. Within a series points are logged in step order and delivered in order
  (one lane per series), so what an interruption leaves stored is a prefix of each series.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np

from .._api import _build, _with_options
from .._config import SPOOL_DIR_DEFAULT, resolve_settings
from .._spool import segments
from .._stats import Metrics
from .._thread_session import ThreadSession
from .source import RunData, SourceRun

__all__ = ["Loader", "RunReport", "Target"]

_CHUNK = 50_000  # points per vectorized call: one inbox entry each
_QUEUE_ENTRIES = 8  # at most this many chunks wait in the inbox (backpressure: Block)


@attrs.frozen
class Target:
    """Where runs go: a metrana server, one project."""

    url: str
    api_key: str | None
    workspace: str
    project: str
    # The spool the import's sessions use: METRANA_SPOOL_DIR or ~/.metrana/spool unless given
    # (None: off).
    spool_dir: Any = SPOOL_DIR_DEFAULT


@attrs.define(eq=False)
class RunReport:
    """What importing one run did."""

    name: str
    source_id: str
    resumed: bool
    series: int = 0
    points: int = 0  # delivered now
    already: int = 0  # stored by an earlier import, not sent again
    metrics: Metrics | None = None
    skipped: Counter[str] = attrs.Factory(Counter)
    superseded: int = 0
    notes: list[str] = attrs.Factory(list)

    @property
    def complete(self) -> bool:
        """Every point was delivered (nothing spooled, dropped or refused)."""
        m = self.metrics
        return m is not None and m.sent == m.logged


Progress = Callable[[int], None]


class Pending:
    """A run whose points are all handed to its session, closing on a thread of its own."""

    def __init__(self, run: ThreadSession, report: RunReport) -> None:
        self._run = run
        self._report = report
        self._thread = threading.Thread(target=self._close, name="metrana-import-close",
                                        daemon=True)
        self._error: BaseException | None = None
        self._thread.start()

    def _close(self) -> None:
        try:
            self._report.metrics = self._run.close()
            self._report.points = self._report.metrics.sent
        except BaseException as exc:  # noqa: BLE001 - raised to the caller by wait()
            self._error = exc

    def wait(self) -> RunReport:
        """The run's report once it is closed (every point delivered, or spooled)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._report


def _stored_prefix(steps: Any, stored: tuple[int, int] | None) -> int:
    """How many of a histogram series' first points are stored already: those up to the last
    stored step, when the stored count says they are all there. (A stored step sent again is
    overwritten with the same histogram, so when in doubt everything is sent.)"""
    if stored is None:
        return 0
    count, last = stored
    after = int(np.searchsorted(steps, last, side="right"))
    return after if after == count else 0


class Loader:
    """Imports runs into one project of one server."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self._by_source: dict[str, str] = {}
        self._names: set[str] = set()
        self._listed = False

    def _list(self) -> None:
        """The project's runs: which were imported from where, and which names are taken."""
        from metrana.query import QueryClient, QueryRequestError

        t = self.target
        with QueryClient(t.workspace, t.project, url=t.url, api_key=t.api_key) as client:
            try:
                runs = client.fetch_runs(attributes=["import/source"])
            except QueryRequestError as exc:
                if exc.status == 404:  # no such project yet: nothing imported, no names taken
                    self._listed = True
                    return
                runs = client.fetch_runs()  # no run has import/source yet
                runs["import/source"] = None
        self._names = set(runs["name"])
        self._by_source = {source: name for source, name in
                           zip(runs["import/source"], runs["name"], strict=True)
                           if isinstance(source, str)}
        self._listed = True

    def run_name(self, source: SourceRun) -> tuple[str, bool]:
        """The name ``source`` is imported as, and whether that run exists (a resume)."""
        if not self._listed:
            self._list()
        found = self._by_source.get(source.source_id)
        if found is not None:
            return found, True
        name = source.name
        if name in self._names:
            name = f"{source.name}-imported"
            counter = 2
            while name in self._names:
                name = f"{source.name}-imported-{counter}"
                counter += 1
        return name, False

    def load(self, source: SourceRun, data: RunData, progress: Progress | None = None
             ) -> RunReport:
        """Import one run (read already); ``progress`` is called with points handed over."""
        return self.start(source, data, progress).wait()

    def start(self, source: SourceRun, data: RunData, progress: Progress | None = None
              ) -> Pending:
        """Log one run (read already) and start closing it: the returned :class:`Pending`
        waits for its delivery, while the caller reads the next run."""
        name, resumed = self.run_name(source)
        report = RunReport(name, source.source_id, resumed, skipped=data.skipped,
                           superseded=data.superseded, notes=list(data.notes))
        stored: dict[str, int] = {}
        stored_histograms: dict[str, tuple[int, int]] = {}
        if resumed:
            self._deliver_spool(name)
            stored = self._last_steps(name)
            stored_histograms = self._histogram_steps(name)
        attributes = [{"path": "import/source", "stringValue": source.source_id}]
        attributes += [{"path": f"tags/{key}", "stringValue": value}
                       for key, value in sorted(data.tags.items())]
        run = self._session(name, source.experiment, data.config, attributes)
        self._names.add(name)
        self._by_source[source.source_id] = name
        try:
            for series in data.series:
                steps, values, stamps = series.steps, series.values, series.timestamps
                last = stored.get(series.name)
                if last is not None:
                    after = int(np.searchsorted(steps, last, side="right"))
                    report.already += after
                    steps, values, stamps = steps[after:], values[after:], stamps[after:]
                    if progress is not None:
                        progress(after)
                report.series += 1
                for start in range(0, len(steps), _CHUNK):
                    end = start + _CHUNK
                    run.log(series.name, values[start:end], step=steps[start:end],
                            timestamp=stamps[start:end])
                    if progress is not None:
                        progress(len(steps[start:end]))
            for histograms in data.histograms:
                after = _stored_prefix(histograms.steps, stored_histograms.get(histograms.name))
                report.already += after
                report.series += 1
                if progress is not None:
                    progress(after)
                for i in range(after, len(histograms)):
                    run.log_histogram(histograms.name, histograms.histograms[i],
                                      step=int(histograms.steps[i]),
                                      timestamp=int(histograms.timestamps[i]))
                    if progress is not None:
                        progress(1)
        except BaseException:
            run.close(timeout=5)  # Ctrl-C: what is queued goes to the spool, for the rerun
            raise
        return Pending(run, report)

    def _session(self, name: str, experiment: str | None, config: dict[str, Any],
                 attributes: list[dict[str, Any]]) -> ThreadSession:
        t = self.target
        arguments = _with_options({
            "workspace_name": t.workspace, "project_name": t.project, "run_name": name,
            "experiment_name": experiment, "ingestion_url": t.url, "api_key": t.api_key,
            "config": config or None, "close_strategy": "CompleteAll",
            "backpressure_strategy": "Block", "event_queue_max_size": _QUEUE_ENTRIES,
            "error_strategy": "RaiseOnClose", "log_level": "Warn", "spool_dir": t.spool_dir,
            # The importer's machine and process are not what produced the run.
            "capture_context": False, "system_metrics_interval": 0})
        created, init_timeout = _build(arguments, ThreadSession, "import", attributes)
        assert isinstance(created, ThreadSession)
        created.start(init_timeout)
        return created

    def _deliver_spool(self, name: str) -> None:
        """Points an interrupted import of this run left in its spool, delivered first: they
        belong to that import's session, and must be stored before the steps are read."""
        from .._sync import sync

        t = self.target
        directory = resolve_settings({
            "workspace_name": t.workspace, "project_name": t.project, "run_name": name,
            "ingestion_url": t.url, "api_key": t.api_key, "spool_dir": t.spool_dir,
        }).run_spool_dir()
        if directory is not None and directory.exists() and segments(directory):
            sync(directory, ingestion_url=t.url, api_key=t.api_key)

    def _histogram_steps(self, name: str) -> dict[str, tuple[int, int]]:
        """Each histogram series' stored count and last step (no labels: what imports log)."""
        from metrana.query import QueryClient

        t = self.target
        with QueryClient(t.workspace, t.project, url=t.url, api_key=t.api_key) as client:
            answer = client._transport.call("value_series", client._body(run=name))
        return {str(s["metric"]): (int(s["count"]), int(s["last_step"]))
                for s in answer["series"]
                if s["kind"] == "histogram" and not s["labels"] and s["last_step"] is not None}

    def _last_steps(self, name: str) -> dict[str, int]:
        """Each standard series' last stored step (ML_STEP, no labels: what imports log)."""
        from metrana.query import QueryClient

        t = self.target
        with QueryClient(t.workspace, t.project, url=t.url, api_key=t.api_key) as client:
            listing = client.list_series(name)
        plain = listing[(listing["kind"] == "standard") & (listing["scale"] == "ML_STEP")
                        & (listing["labels"].map(len) == 0) & listing["last_step"].notna()]
        return {str(m): int(s) for m, s in zip(plain["metric"], plain["last_step"], strict=True)}

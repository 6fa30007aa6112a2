"""MLflow runs as runs: every metric's whole history, params as config, tags as tags.

Read through the ``mlflow-skinny`` client (``MlflowClient``), so any tracking URI it takes
works: a file store (``file:///…/mlruns`` or a path), a database (``sqlite:///…``, which
needs SQLAlchemy, as MLflow itself does), a tracking server (``http://…``).
``MlflowClient.get_metric_history`` returns a metric's whole history, following the server's
pages; MLflow's sampled history APIs are never used.

A run keeps its MLflow run name (its id when it has none) and gets its experiment's name as
its experiment. A metric's points are ordered by step, then time. MLflow allows several values
at one step: where a metric was logged without steps at all (every point at step 0) its points
are numbered 0, 1, 2, ... in time order, as metrana would have numbered them; otherwise the
last value logged at a step is kept, like a TensorBoard rewrite. Params are strings in MLflow;
those that read as numbers or booleans become numbers and booleans in the config.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import numpy as np

from .source import RunData, SeriesData, SourceRun, increasing, metric_name

__all__ = ["find_runs", "param_value"]

_KEY_UNSAFE = re.compile(r"[^a-zA-Z0-9._\-:/]")
_INT = re.compile(r"[+-]?\d+\Z")
_PAGE = 1000


def _client(tracking_uri: str) -> Any:
    import os

    # MLflow 3 opens a file store only when allowed: importing one is how it is left behind.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow and SQLAlchemy deprecation warnings are theirs, not the user's to act on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def find_runs(tracking_uri: str, experiments: Sequence[str] = ()) -> list[SourceRun]:
    """Every run of the named experiments (default: all), oldest first.

    Raises:
        ValueError: an experiment named is not in the store (the message lists them).
    """
    with _quiet():
        return _find_runs(tracking_uri, experiments)


def _find_runs(tracking_uri: str, experiments: Sequence[str]) -> list[SourceRun]:
    from mlflow.entities import ViewType

    client = _client(tracking_uri)
    found = client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=50_000)
    by_name = {e.name: e for e in found}
    if experiments:
        missing = [name for name in experiments if name not in by_name]
        if missing:
            raise ValueError(f"no experiment {', '.join(map(repr, missing))} in {tracking_uri}; "
                             f"it has: {', '.join(sorted(by_name)) or 'none'}")
        chosen = [by_name[name] for name in experiments]
    else:
        chosen = list(found)
    runs: list[SourceRun] = []
    for experiment in chosen:
        token = None
        while True:
            page = client.search_runs([experiment.experiment_id], max_results=_PAGE,
                                      order_by=["attributes.start_time ASC"], page_token=token)
            for run in page:
                info = run.info
                runs.append(SourceRun(
                    source_id=f"mlflow:{tracking_uri}:{info.run_id}",
                    name=info.run_name or info.run_id, experiment=experiment.name,
                    read=partial(_read_run, tracking_uri, info.run_id)))
            token = page.token
            if not token:
                break
    return runs


def param_value(text: str) -> Any:
    """An MLflow param (always a string) as the value it spells: int, float, bool or str."""
    if _INT.match(text):
        return int(text)
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    try:
        number = float(text)
    except ValueError:
        return text
    return number if text.strip().lower() not in ("nan", "inf", "-inf", "infinity") else text


def _key(key: str) -> str:
    return _KEY_UNSAFE.sub("_", key) or "_"


def _read_run(tracking_uri: str, run_id: str) -> RunData:
    with _quiet():
        return _read(tracking_uri, run_id)


def _read(tracking_uri: str, run_id: str) -> RunData:
    client = _client(tracking_uri)
    run = client.get_run(run_id)
    data = RunData()
    data.config = {_key(k): param_value(v) for k, v in sorted(run.data.params.items())}
    data.tags = {_key(k): str(v) for k, v in sorted(run.data.tags.items())}
    names: set[str] = set()
    for key in sorted(run.data.metrics):
        history = client.get_metric_history(run_id, key)
        if not history:
            continue
        steps = np.array([m.step for m in history], dtype=np.int64)
        stamps = np.array([m.timestamp for m in history], dtype=np.int64)
        values = np.array([m.value for m in history], dtype=np.float64)
        order = np.lexsort((stamps, steps))  # by step, then time; stable for equal pairs
        steps, stamps, values = steps[order], stamps[order], values[order]
        if len(steps) > 1 and (steps == steps[0]).all():
            data.notes.append(f"{key}: logged without steps; its {len(steps):,} points are "
                              "numbered 0, 1, 2, ... in time order")
            steps = np.arange(len(steps), dtype=np.int64)
        negative = steps < 0
        if negative.any():
            data.notes.append(f"{key}: {int(negative.sum()):,} points with a negative step "
                              "skipped (metrana steps start at 0)")
            steps, stamps, values = steps[~negative], stamps[~negative], values[~negative]
        keep = increasing(steps)
        data.superseded += len(steps) - int(keep.sum())
        name = metric_name(key)
        if name in names:
            name = f"{name}_{len(names)}"
        names.add(name)
        data.series.append(SeriesData(name, steps[keep], values[keep],
                                      stamps[keep] * 1_000_000))  # MLflow keeps milliseconds
    return data

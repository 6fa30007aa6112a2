"""``metrana import mlflow``: a real file store and a real sqlite:/// store, made with MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrana._cli import main
from metrana.query import QueryClient

# MLflow's SQLAlchemy store uses what SQLAlchemy 2.1 deprecates (its warnings, not ours).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

METRICS = ("loss", "accuracy", "lr")
T0 = 1_750_000_000_000  # ms


def make_store(uri: str, steps: int) -> list[str]:
    """3 runs x 3 metrics x ``steps`` steps in experiment 'sweep', with params and tags; one
    run in another experiment. Returns the sweep's run names."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    sweep = client.create_experiment("sweep")
    other = client.create_experiment("other")
    names = []
    for i in range(3):
        run = client.create_run(sweep, run_name=f"trial-{i}", tags={"team": "vision"})
        names.append(f"trial-{i}")
        client.log_param(run.info.run_id, "lr", str(0.1 / (i + 1)))
        client.log_param(run.info.run_id, "batch_size", "64")
        client.log_param(run.info.run_id, "optimizer", "adam")
        metrics = [Metric(key, _value(key, i, step, steps), T0 + step, step)
                   for key in METRICS for step in range(steps)]
        for start in range(0, len(metrics), 1000):
            client.log_batch(run.info.run_id, metrics=metrics[start:start + 1000])
        client.set_terminated(run.info.run_id)
    stray = client.create_run(other, run_name="elsewhere")
    client.log_metric(stray.info.run_id, "loss", 1.0, step=0)
    return names


def _value(key: str, run: int, step: int, steps: int) -> float:
    return {"loss": 1.0 / (1 + step), "accuracy": step / steps, "lr": 0.1 / (run + 1)}[key] + run


@pytest.fixture(autouse=True)
def file_store_allowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow 3 refuses to *write* a new file store unless told; the tests make old-style
    stores to import (the importer itself allows reading them)."""
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")


# The file store at the size; the sqlite:/// store smaller: MLflow's SQLAlchemy store
# writes ~2,500 metric points a second on the 2-core machine (90,000 took 37 s under load).
@pytest.fixture(params=[("file", 10_000), ("sqlite", 2_000)], ids=["file", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, int]:
    kind, steps = request.param
    uri = (f"file://{tmp_path / 'mlruns'}" if kind == "file"
           else f"sqlite:///{tmp_path / 'mlflow.db'}")
    return uri, steps


def test_every_metric_point_params_and_tags_are_imported_once(
        store: tuple[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each run's whole metric history arrives at its step and time; params are config
    (numbers as numbers), tags are tags; importing again adds nothing."""
    tracking_uri, steps_per_run = store
    names = make_store(tracking_uri, steps_per_run)
    db = str(tmp_path / "db.sqlite3")
    command = ["import", "mlflow", "--tracking-uri", tracking_uri, "--experiment", "sweep",
               "--project", "ml", "--db", db]
    assert main(command) == 0
    assert f"imported {3 * 3 * steps_per_run:,} points of 9 series in 3 run(s)" in capsys.readouterr().out
    with QueryClient("imported", "ml", db=db) as client:
        runs = client.fetch_runs(attributes=["config/lr", "config/batch_size",
                                             "config/optimizer", "tags/team"]).set_index("name")
        assert sorted(runs.index) == names
        assert set(runs["experiment"]) == {"sweep"}
        assert runs.loc["trial-1", "config/lr"] == 0.05
        assert runs.loc["trial-1", "config/batch_size"] == 64
        assert runs.loc["trial-1", "config/optimizer"] == "adam"
        assert runs.loc["trial-1", "tags/team"] == "vision"
        curves = client.fetch_float_series(names, list(METRICS), include_timestamps=True)
        listing = client.list_series()
    assert set(listing["count"]) == {steps_per_run} and len(listing) == 9
    steps = np.arange(steps_per_run)
    for i, name in enumerate(names):
        mine = curves.loc[name]
        assert (mine.index.to_numpy() == steps).all()
        for key in METRICS:
            assert mine[key].tolist() == [_value(key, i, s, steps_per_run)
                                          for s in range(steps_per_run)]
        stamps = mine["loss:timestamp"].astype("int64").to_numpy()
        assert (stamps == (T0 + steps) * 1_000_000).all()

    assert main(command) == 0
    assert "imported 0 points" in capsys.readouterr().out
    with QueryClient("imported", "ml", db=db) as client:
        assert set(client.list_series()["count"]) == {steps_per_run}


def test_an_unknown_experiment_is_named_with_those_there(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"file://{tmp_path / 'mlruns'}"
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=uri).create_experiment("sweep")
    assert main(["import", "mlflow", "--tracking-uri", uri, "--experiment", "sweeep",
                 "--db", str(tmp_path / "db.sqlite3")]) == 2
    assert "no experiment 'sweeep'" in capsys.readouterr().err

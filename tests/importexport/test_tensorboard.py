"""``metrana import tensorboard``: real event files in, every point stored once, Parquet out."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from metrana._cli import main
from metrana.query import QueryClient
from tests.helpers import metrana_command, wait_until
from tests.importexport.conftest import RUN_STEPS, RUNS
from tests.importexport.write_tensorboard import loss, lr
from tests.support import start_serve, stop_serve


def client_for(db: str, project: str = "logs") -> QueryClient:
    return QueryClient("imported", project, db=db)


def counts(db: str, project: str = "logs") -> dict[tuple[str, str], int]:
    with client_for(db, project) as client:
        listing = client.list_series()
    return {(r, m): int(c) for r, m, c in zip(listing["run"], listing["metric"],
                                               listing["count"], strict=True)}


def test_import_stores_every_scalar_once_and_exports_typed_parquet(
        tb_logdir: Path, db_target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every scalar of three 100,000-step runs is stored with its step, value (float32, as
    TensorBoard keeps it) and wall time; hparams become config; histograms become histogram
    series; images and text are listed as skipped; a second import adds nothing; the Parquet
    export reads back equal."""
    assert main(["import", "tensorboard", str(tb_logdir), "--db", db_target]) == 0
    out = capsys.readouterr().out
    assert "histograms" not in out
    assert "skipped 2 images" in out and "skipped 1 text" in out
    assert f"imported {3 * RUN_STEPS + 3 * RUN_STEPS // 100 + 3 + 1 + 3:,} points" in out
    stored = counts(db_target)
    assert stored == {**{(run, "train/loss"): RUN_STEPS for run in RUNS},
                      **{(run, "train/lr"): RUN_STEPS // 100 for run in RUNS},
                      ("seed-0", "val_loss"): 3, ("seed-0", "hparam/accuracy"): 1}

    with client_for(db_target) as client:
        runs = client.fetch_runs(attributes=["config/lr", "config/optimizer", "config/layers",
                                             "import/source"]).set_index("name")
        curves = client.fetch_float_series(list(RUNS), ["train/loss", "train/lr"],
                                           include_timestamps=True)
    assert runs.loc["seed-0", "config/optimizer"] == "adam"
    assert runs.loc["seed-0", "config/layers"] == 3 and runs.loc["seed-0", "config/lr"] == 0.1
    assert runs.loc["seed-1", "import/source"] == f"tensorboard:{tb_logdir.resolve()}:seed-1"
    steps = np.arange(RUN_STEPS)
    for run in RUNS:
        mine = curves.loc[run]
        assert (mine.index.to_numpy() == steps).all()
        assert (mine["train/loss"].to_numpy() == loss(steps).astype(np.float32)).all()
        kept = mine["train/lr"].dropna()
        assert (kept.to_numpy() == lr(kept.index.to_numpy()).astype(np.float32)).all()
        times = mine["train/loss:timestamp"]
        assert times.is_monotonic_increasing and times.iloc[0].year >= 2024

    assert main(["import", "tensorboard", str(tb_logdir), "--db", db_target]) == 0
    assert "imported 0 points" in capsys.readouterr().out
    assert counts(db_target) == stored
    with client_for(db_target) as client:
        assert len(client.fetch_histogram_series("seed-0", "weights")) == 3

    per_run = tmp_path / "export"
    one_file = tmp_path / "all.parquet"
    assert main(["export", "imported/logs", "--format", "parquet", "-o", str(per_run),
                 "--db", db_target]) == 0
    assert main(["export", "imported/logs", "--format", "parquet", "-o", str(one_file),
                 "--db", db_target]) == 0
    assert sorted(p.name for p in per_run.iterdir()) == [f"{run}.parquet" for run in RUNS]
    schema = pq.read_schema(one_file)
    assert str(schema.field("step").type) == "int64"
    assert str(schema.field("value").type) == "double"
    assert str(schema.field("timestamp").type) == "timestamp[ns, tz=UTC]"
    with client_for(db_target) as client:
        expected = client.fetch_run_points()
    everything = pd.read_parquet(one_file)
    key = ["run", "metric", "step"]
    pd.testing.assert_frame_equal(
        everything.sort_values(key).reset_index(drop=True),
        expected.sort_values(key).reset_index(drop=True), check_dtype=False)
    assert len(everything) == sum(stored.values())
    first = pd.read_parquet(per_run / "seed-1.parquet")
    loss_points = first[first["metric"] == "train/loss"].sort_values("step")
    assert (loss_points["value"].to_numpy() == loss(steps).astype(np.float32)).all()
    assert (loss_points["timestamp"].to_numpy()
            == curves.loc["seed-1"]["train/loss:timestamp"].to_numpy()).all()


def test_a_restarted_job_keeps_what_it_wrote_later(tmp_path: Path) -> None:
    """A job that crashed after step 9 and restarted from step 5 logged 5..9 twice; the
    later values win and the crashed job's 8 and 9 (never rewritten) go, as in TensorBoard."""
    from torch.utils.tensorboard import SummaryWriter

    run = tmp_path / "logs" / "job"
    with SummaryWriter(str(run)) as first:
        for step in range(10):
            first.add_scalar("loss", float(step), step)
    with SummaryWriter(str(run)) as second:  # a new file, as a restarted job writes
        for step in range(5, 8):
            second.add_scalar("loss", 100.0 + step, step)
    db = str(tmp_path / "db.sqlite3")
    assert main(["import", "tensorboard", str(tmp_path / "logs"), "--db", db]) == 0
    with client_for(db) as client:
        stored = client.fetch_float_series("job", "loss")["loss"]
    assert stored.loc["job"].to_dict() == {0: 0.0, 1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0,
                                           5: 105.0, 6: 106.0, 7: 107.0}


def test_an_import_into_a_database_with_keys_needs_none(tmp_path: Path) -> None:
    """``--db`` of a database that has keys: the import's own server lets the importer in
    (whoever can open the database may write to it), and records its runs as ``server-key``."""
    from torch.utils.tensorboard import SummaryWriter

    from metrana.server.store import Store
    from tests.support import make_key

    with SummaryWriter(str(tmp_path / "logs" / "keyed")) as writer:
        for step in range(3):
            writer.add_scalar("loss", float(step), step)
    db = str(tmp_path / "db.sqlite3")
    make_key(db, "read", "elsewhere")
    assert main(["import", "tensorboard", str(tmp_path / "logs"), "--db", db]) == 0
    store = Store(db)
    try:
        run = store.get_run("imported", "logs", "keyed")
    finally:
        store.close()
    assert run["attributes"]["created_by"]["value"] == "server-key"
    assert sum(s["point_count"] for s in run["series"]) == 3


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_an_interrupted_import_completes_when_run_again(tb_logdir: Path, tmp_path: Path,
                                                        sig: signal.Signals) -> None:
    """Killed (SIGKILL) or interrupted (Ctrl-C) once some points are stored, then run again:
    every point stored exactly once (histograms too)."""
    proc, url = start_serve(tmp_path / "db.sqlite3")
    db = str(tmp_path / "db.sqlite3")
    total = 3 * (RUN_STEPS + RUN_STEPS // 100) + 4
    try:
        command = metrana_command("import", "tensorboard", str(tb_logdir), "--url", url)
        importer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)

        def some_stored() -> bool:
            try:
                return sum(counts(db).values()) > 0
            except Exception:  # noqa: BLE001 - the project does not exist yet
                return False

        wait_until(some_stored, timeout=60)
        importer.send_signal(sig)
        _, err = importer.communicate(timeout=60)
        if sig == signal.SIGINT:
            assert importer.returncode == 130, err
            assert "interrupted; run the same command again" in err
        before = sum(counts(db).values())
        assert 0 < before < total - 4, "not interrupted mid-way"
        again = subprocess.run(metrana_command("import", "tensorboard", str(tb_logdir), "--url",
                                               url), capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        assert "resumed" in again.stdout
        after = counts(db)
        assert after[("seed-0", "train/loss")] == after[("seed-2", "train/loss")] == RUN_STEPS
        with client_for(db) as client:
            points = client.fetch_run_points()
            histograms = client.fetch_histogram_series("seed-0", "weights")
        assert not points.duplicated(["run", "metric", "step"]).any()
        assert len(points) == total
        assert histograms["step"].tolist() == [0, 1, 2]
    finally:
        stop_serve(proc)


def test_a_file_cut_short_is_imported_up_to_the_cut(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """A run still being written ends in a partial record: what precedes it is imported and
    the summary says where reading stopped."""
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(tmp_path / "logs" / "live")) as writer:
        for step in range(50):
            writer.add_scalar("train/loss", 1.0, step)
    (events,) = (tmp_path / "logs" / "live").iterdir()
    with open(events, "r+b") as handle:
        handle.truncate(os.path.getsize(events) - 7)
    db = str(tmp_path / "db.sqlite3")
    assert main(["import", "tensorboard", str(tmp_path / "logs"), "--db", db]) == 0
    assert "stopped at a record cut short" in capsys.readouterr().out
    assert counts(db)[("live", "train/loss")] == 49


def test_bad_sources_are_one_line_errors(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A missing directory, or one without event files, says so; nothing is created."""
    db = tmp_path / "db.sqlite3"
    assert main(["import", "tensorboard", str(tmp_path / "nope"), "--db", str(db)]) == 2
    assert "is not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["import", "tensorboard", str(tmp_path / "empty"), "--db", str(db)]) == 1
    assert "no TensorBoard event files" in capsys.readouterr().err
    assert not db.exists()

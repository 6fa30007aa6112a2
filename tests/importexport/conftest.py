"""Real sources, made once per session: TensorBoard runs written by torch's SummaryWriter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

RUN_STEPS = 100_000  # train/loss points per run (the acceptance size)
RUNS = ("seed-0", "seed-1", "seed-2")


def write_runs(root: Path, runs: Sequence[tuple[str, int, bool]]) -> None:
    """Write runs (name, steps, extras) with SummaryWriter, each in its own process, at once
    (100,000 add_scalar calls take ~6 s: torch computes TFRecord CRCs in Python)."""
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-m",
                               "tests.importexport.write_tensorboard", str(root / name),
                               str(steps), *(["--extras"] if extras else [])],
                              stderr=subprocess.PIPE, text=True)
             for name, steps, extras in runs]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err


@pytest.fixture(scope="session")
def tb_logdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs of 100,000 steps; the first also has hparams, histograms, images, text."""
    root = tmp_path_factory.mktemp("tensorboard") / "logs"
    write_runs(root, [(name, RUN_STEPS, name == RUNS[0]) for name in RUNS])
    return root

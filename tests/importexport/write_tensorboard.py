"""Writes a TensorBoard run with torch's SummaryWriter, as a training job would (run as a
script, so the test's runs are written in parallel processes).

``python -m tests.importexport.write_tensorboard DIR STEPS [--extras]``: ``train/loss`` at
every step and ``train/lr`` every 100th; with ``--extras`` also hparams (into DIR itself),
a tag with a space, 3 histograms, 2 images and a text.
"""

from __future__ import annotations

import sys

import numpy as np


def loss(step: np.ndarray) -> np.ndarray:
    """What the runs log as train/loss (the tests compare against it as float32)."""
    out: np.ndarray = np.exp(-step / 30_000) + 0.01 * np.sin(step)
    return out


def lr(step: np.ndarray) -> np.ndarray:
    out: np.ndarray = 0.1 / (1 + step / 1000)
    return out


def write(directory: str, steps: int, extras: bool) -> None:
    from torch.utils.tensorboard import SummaryWriter

    losses = loss(np.arange(steps)).tolist()
    with SummaryWriter(directory, max_queue=10_000, flush_secs=3600) as writer:
        for step in range(steps):
            writer.add_scalar("train/loss", losses[step], step)
            if step % 100 == 0:
                writer.add_scalar("train/lr", float(lr(np.array(step))), step)
        if extras:
            for step in range(3):
                writer.add_histogram("weights", np.random.default_rng(step).normal(size=100), step)
                writer.add_scalar("val loss", 1.0 / (step + 1), step)
            for step in range(2):
                writer.add_image("sample", np.zeros((3, 4, 4)), step)
            writer.add_text("notes", "a run with extras", 0)
            writer.add_hparams({"lr": 0.1, "optimizer": "adam", "layers": 3, "dropout": 0.5},
                               {"hparam/accuracy": 0.9}, run_name=".")


if __name__ == "__main__":
    write(sys.argv[1], int(sys.argv[2]), "--extras" in sys.argv[3:])

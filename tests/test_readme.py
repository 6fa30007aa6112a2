"""The README's Python examples run as written against a real ``metrana serve``, and the server
stores what they log: the README cannot drift from the library.

Every fenced ``python`` block of README.md runs in its own process. The harness adds only this:

- the URL ``http://127.0.0.1:8787`` (what ``metrana serve`` prints by default) is replaced by
  the test server's URL, and ``METRANA_INGESTION_URL`` points there too; ``METRANA_SPOOL_DIR``
  is the test's own directory;
- a prelude defines the placeholders the prose names as the reader's own code:
  ``train_step()`` (returns a loss and an accuracy) and ``scheduler`` (has ``.lr``);
- a block that logs without starting a run (the RL helpers, "after metrana.init(...)") runs
  inside a run the harness opens and closes: ``readme/snippets/<section>-<n>``;
- the integration examples get the reader's model and data from ``INTEGRATION_PRELUDES``
  (a tiny model, a few batches) and train for less: ``SHORTER`` rewrites their step counts.

``EXPECTED`` says, per block, which runs it must leave on the server with how many points. A new
block without an entry fails the test: write down what it should store.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import start_serve, stop_serve

README = Path(__file__).parent.parent / "README.md"
DEFAULT_URL = "http://127.0.0.1:8787"

PRELUDE = '''
import random as _random

def train_step():
    """Stands for the reader's training step: returns (loss, accuracy)."""
    return _random.random(), _random.random()

class _Scheduler:
    lr = 3e-4

scheduler = _Scheduler()
'''

OPEN_RUN = '''
import metrana
metrana.init(workspace_name="readme", project_name="snippets", run_name={run!r},
             ingestion_url={url!r}, close_strategy="CompleteAll")
'''

# The reader's own model and data for the integration examples, as small as they come.
_TINY_BERT = '''
import tempfile, torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments

class _Tokens(torch.utils.data.Dataset):
    def __init__(self, n):
        self.ids = torch.randint(2, 30, (n, 8), generator=torch.Generator().manual_seed(n))
        self.labels = (self.ids % 2).sum(dim=1) % 2
    def __len__(self):
        return len(self.ids)
    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "labels": self.labels[i]}

model = BertForSequenceClassification(BertConfig(
    vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    intermediate_size=32, max_position_embeddings=16, num_labels=2))
args = TrainingArguments(output_dir=tempfile.mkdtemp(), max_steps=8, logging_steps=2,
                         eval_strategy="steps", eval_steps=4, report_to="none",
                         save_strategy="no", use_cpu=True, disable_tqdm=True)
ds, ev = _Tokens(64), _Tokens(16)
'''
_TINY_LIGHTNING = '''
import torch
import lightning

class _Model(lightning.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
    def training_step(self, batch, _):
        loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
        self.log("train/loss", loss)
        return loss
    def validation_step(self, batch, _):
        self.log("val/loss", torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1]))
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

_data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
model = _Model()
train_loader = torch.utils.data.DataLoader(_data, batch_size=16)
val_loader = torch.utils.data.DataLoader(_data, batch_size=16)
'''
INTEGRATION_PRELUDES = {("Integrations", 3): _TINY_BERT, ("Integrations", 4): _TINY_LIGHTNING}
SHORTER = {"model.learn(100_000": "model.learn(512", "max_epochs=10": "max_epochs=2,"
           " enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,"
           " default_root_dir=__import__('tempfile').mkdtemp()"}

# (section, index of the block in that section) -> {run: points stored}; None: it depends on
# the episodes a random policy plays (the integration tests check those values exactly).
EXPECTED: dict[tuple[str, int], dict[str, int | None]] = {
    ("Quick start", 0): {"my-workspace/my-project/run-001": 3000},
    ("Three ways in", 0): {"ws/p/run-module": 1, "ws/p/run-session": 2, "ws/p/run-trio": 1},
    ("RL helpers", 0): {"readme/snippets/rl-helpers-1": 3},
    ("RL helpers", 1): {"readme/snippets/rl-helpers-2": 64 * 1000 + 2},
    # Histograms and clouds are not in a run's point count (that counts scalar points):
    # tests/query/test_values.py reads them back exactly.
    ("Histograms and scatter plots", 0): {"readme/snippets/histograms-and-scatter-plots-1": 0},
    # The offline example; the test then runs the `metrana sync --url` the README shows next.
    ("Guarantees", 0): {"ws/p/offline-001": 1},
    ("What a run records besides your metrics", 0): {"ws/p/tagged-1": 1},
    ("Integrations", 0): {"ws/p/cartpole-1": None},
    ("Integrations", 1): {"readme/snippets/integrations-2": None},
    ("Integrations", 2): {"ws/p/ppo-1": None},
    ("Integrations", 3): {"ws/p/bert-1": None},
    ("Integrations", 4): {"ws/p/mlp-1": None},
    ("Read your runs from Python", 0): {"me/sweep/lr-0.3": 400, "me/sweep/lr-0.03": 400,
                                        "me/sweep/lr-0.003": 400},
    ("Sweeps: seeds grouped, RL summaries", 0): {f"me/seeds/lr{lr}-s{seed}": 120
                                                 for lr in (0.01, 0.1) for seed in range(3)},
    ("Groups compared with statistical confidence", 0): {
        f"me/bench/{algo}-{task}-s{seed}": 20 for algo in ("dqn", "ppo", "sac")
        for task in ("breakout", "pong") for seed in range(5)},
}


def python_blocks() -> Iterator[tuple[str, int, str]]:
    """(section heading, index within the section, code) of every ```python block."""
    section, counts, block = "", dict[str, int](), list[str]()
    inside = False
    for line in README.read_text().splitlines():
        if inside:
            if line.strip() == "```":
                inside = False
                index = counts.get(section, 0)
                counts[section] = index + 1
                yield section, index, "\n".join(block) + "\n"
            else:
                block.append(line)
        elif line.strip() == "```python":
            inside, block = True, []
        elif line.startswith("#"):
            section = line.lstrip("#").strip()


BLOCKS = list(python_blocks())


@pytest.fixture(scope="module")
def readme_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A `metrana serve` of the README's own, so its run names meet no other test's."""
    proc, url = start_serve(tmp_path_factory.mktemp("readme") / "readme.sqlite3",
                            capture_stderr=False)
    try:
        yield url
    finally:
        stop_serve(proc)


def stored(url: str) -> dict[str, int]:
    runs = httpx.get(f"{url}/api/runs").json()["runs"]
    return {f"{r['workspace']}/{r['project']}/{r['run']}": r["point_count"] for r in runs}


def test_every_python_block_has_an_expectation() -> None:
    """A block added to the README must say what it stores (and a removed one is noticed)."""
    assert {(section, index) for section, index, _ in BLOCKS} == set(EXPECTED)


@pytest.mark.parametrize(("section", "index", "code"), BLOCKS,
                         ids=[f"{s}-{i}" for s, i, _ in BLOCKS])
def test_readme_block_runs_and_stores_what_it_logs(
        section: str, index: int, code: str, readme_server: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs without a traceback or a warning, and the server holds every point."""
    monkeypatch.setenv("METRANA_INGESTION_URL", readme_server)
    for long, short in SHORTER.items():
        code = code.replace(long, short)
    script = (PRELUDE + INTEGRATION_PRELUDES.get((section, index), "")
              + code.replace(DEFAULT_URL, readme_server))
    own_run = "metrana.init(" not in code and "session(" not in code
    if own_run:
        slug = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
        script = (OPEN_RUN.format(run=f"{slug}-{index + 1}", url=readme_server) + script
                  + "\nmetrana.close()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    offline = 'mode="offline"' in code
    if not offline:
        assert "WARNING" not in done.stderr, done.stderr
    if (section, index) == ("Quick start", 0):  # what the README says close() prints
        assert "closed run run-001: 3,000 of 3,000 points delivered" in done.stderr, done.stderr
    if offline:
        sync = subprocess.run([sys.executable, "-m", "metrana", "sync", "--url", readme_server],
                              capture_output=True, text=True, timeout=120)
        assert sync.returncode == 0, sync.stderr
    have = stored(readme_server)
    for run, points in EXPECTED[(section, index)].items():
        if points is None:
            assert have.get(run, 0) > 0, (run, done.stderr)
        else:
            assert have.get(run) == points, (run, have.get(run), done.stderr)

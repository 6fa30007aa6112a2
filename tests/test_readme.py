"""The Python examples of the README and of every page of ``docs/`` run as written against a real
``metrana serve``, and the server stores what they log: the docs cannot drift from the library.

Every fenced ``python`` (or ``py``) block runs in its own process, against a server of its own
file (so the README's Quick start and the getting-started page's copy of it each store their
points once). The harness adds only this:

- the URL ``http://127.0.0.1:8787`` (what ``metrana serve`` prints by default) is replaced by
  the test server's URL, and ``METRANA_INGESTION_URL`` points there too; ``METRANA_SPOOL_DIR``
  is the test's own directory;
- a block that logs without starting a run (the RL helpers, "after metrana.init(...)") runs
  inside a run the harness opens and closes: ``readme/snippets/<section>-<n>``;
- the integration examples get the reader's model and data from ``INTEGRATION_PRELUDES``
  (a tiny model, a few batches) and train for less: ``SHORTER`` rewrites their step counts.

A block that cannot run here says so on the line before its fence, with the reason:
``<!-- not-run: the official client is another distribution of the import name -->``.

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

ROOT = Path(__file__).parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DEFAULT_URL = "http://127.0.0.1:8787"

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
INTEGRATION_PRELUDES = {("integrations.md", "Integrations", 3): _TINY_BERT,
                        ("integrations.md", "Integrations", 4): _TINY_LIGHTNING}
SHORTER = {"model.learn(100_000": "model.learn(512", "max_epochs=10": "max_epochs=2,"
           " enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,"
           " default_root_dir=__import__('tempfile').mkdtemp()"}

# (file, section, index of the block in that section) -> {run: points stored}; None: it depends
# on the episodes a random policy plays (the integration tests check those values exactly).
EXPECTED: dict[tuple[str, str, int], dict[str, int | None]] = {
    ("README.md", "Quick start", 0): {"my-workspace/my-project/run-001": 3000},
    ("README.md", "Three ways in", 0): {"ws/p/run-module": 1, "ws/p/run-session": 2,
                                        "ws/p/run-trio": 1},
    ("getting-started.md", "Your first run", 0): {"my-workspace/my-project/run-001": 3000},
    ("getting-started.md", "Three ways in", 0): {"ws/p/run-module": 1, "ws/p/run-session": 2,
                                                 "ws/p/run-trio": 1},
    # loss: 2 points, acc 1, val/loss 1, loss{split=val} 1, grad_norm 3.
    ("logging.md", "Logging", 0): {"ws/p/logging-1": 8},
    ("rl.md", "RL helpers", 0): {"readme/snippets/rl-helpers-1": 3},
    ("rl.md", "RL helpers", 1): {"readme/snippets/rl-helpers-2": 64 * 1000 + 2},
    # Histograms and clouds are not in a run's point count (that counts scalar points):
    # tests/query/test_values.py reads them back exactly.
    ("logging.md", "What a run records besides your metrics", 0): {"ws/p/tagged-1": 1},
    ("logging.md", "Histograms and scatter plots", 0): {
        "readme/snippets/histograms-and-scatter-plots-1": 0},
    # The offline example; the test then runs the `metrana sync --url` the page shows next.
    ("guarantees.md", "Offline mode", 0): {"ws/p/offline-001": 1},
    ("README.md", "Distributed training", 0): {"ws/p/ddp-job": 200},
    ("distributed.md", "Distributed training", 0): {"ws/p/ddp-1": 1},
    ("distributed.md", "One run per job", 0): {"ws/p/job-run": 40},
    ("distributed.md", "Reading a merged series back", 0): {"ws/p/merged-read": 6},
    ("integrations.md", "Integrations", 0): {"ws/p/cartpole-1": None},
    ("integrations.md", "Integrations", 1): {"readme/snippets/integrations-2": None},
    ("integrations.md", "Integrations", 2): {"ws/p/ppo-1": None},
    ("integrations.md", "Integrations", 3): {"ws/p/bert-1": None},
    ("integrations.md", "Integrations", 4): {"ws/p/mlp-1": None},
    ("query.md", "Read your runs from Python", 0): {"me/sweep/lr-0.3": 400,
                                                    "me/sweep/lr-0.03": 400,
                                                    "me/sweep/lr-0.003": 400},
    ("comparing.md", "From Python: seeds grouped, RL summaries", 0): {
        f"me/seeds/lr{lr}-s{seed}": 120 for lr in (0.01, 0.1) for seed in range(3)},
    ("comparing.md", "Groups compared with statistical confidence", 0): {
        f"me/bench/{algo}-{task}-s{seed}": 20 for algo in ("dqn", "ppo", "sac")
        for task in ("breakout", "pong") for seed in range(5)},
}

NOT_RUN = re.compile(r"^<!-- not-run: (?P<reason>\S.*\S) -->$")


def python_blocks(path: Path) -> Iterator[tuple[str, int, str, str | None]]:
    """(section heading, index within the section, code, the reason it is not run or None) of
    every ```python (or ```py) block of one Markdown file."""
    section, counts, block = "", dict[str, int](), list[str]()
    fence: str | None = None  # the language of the fenced block we are in
    previous, reason = "", None
    for line in path.read_text().splitlines():
        if fence is not None:
            if line.strip() == "```":
                if fence in ("python", "py"):
                    index = counts.get(section, 0)
                    counts[section] = index + 1
                    yield section, index, "\n".join(block) + "\n", reason
                fence = None
            else:
                block.append(line)
        elif line.strip().startswith("```"):
            fence, block = line.strip()[3:].strip(), []
            marker = NOT_RUN.match(previous.strip())
            reason = marker["reason"] if marker else None
        elif line.startswith("#"):
            section = line.lstrip("#").strip()
        previous = line


BLOCKS = [(path.name, section, index, code, reason)
          for path in DOC_FILES for section, index, code, reason in python_blocks(path)]
RUN = [block[:4] for block in BLOCKS if block[4] is None]


@pytest.fixture(scope="module")
def doc_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A `metrana serve` per Markdown file, started when its first block runs: the file's run
    names meet no other file's or test's."""
    procs: list[subprocess.Popen[str]] = []

    class _Servers(dict[str, str]):
        def __missing__(self, name: str) -> str:
            proc, url = start_serve(tmp_path_factory.mktemp("docs") / f"{name}.sqlite3",
                                    capture_stderr=False)
            procs.append(proc)
            self[name] = url
            return url

    servers = _Servers()
    try:
        yield servers
    finally:
        for proc in procs:
            stop_serve(proc)


def stored(url: str) -> dict[str, int]:
    runs = httpx.get(f"{url}/api/runs").json()["runs"]
    return {f"{r['workspace']}/{r['project']}/{r['run']}": r["point_count"] for r in runs}


def test_every_python_block_has_an_expectation_or_a_reason() -> None:
    """A block added to the docs must say what it stores, or why it cannot run (and a removed
    one is noticed)."""
    assert {block[:3] for block in RUN} == set(EXPECTED)
    assert len(RUN) >= 10  # the harness found the blocks at all


def test_a_not_run_marker_names_its_reason(tmp_path: Path) -> None:
    """The marker excuses only the block right after it, and only with a reason."""
    page = tmp_path / "page.md"
    page.write_text("# A\n\n<!-- not-run: needs a GPU -->\n```python\nx = 1\n```\n\n"
                    "```py\ny = 2\n```\n<!-- not-run: -->\n```python\nz = 3\n```\n")
    assert [(s, i, r) for s, i, _, r in python_blocks(page)] == [
        ("A", 0, "needs a GPU"), ("A", 1, None), ("A", 2, None)]


@pytest.mark.parametrize(("file", "section", "index", "code"), RUN,
                         ids=[f"{f}-{s}-{i}" for f, s, i, _ in RUN])
def test_doc_block_runs_and_stores_what_it_logs(
        file: str, section: str, index: int, code: str, doc_servers: dict[str, str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block runs without a traceback or a warning, and the server holds every point."""
    readme_server = doc_servers[file]
    monkeypatch.setenv("METRANA_INGESTION_URL", readme_server)
    for long, short in SHORTER.items():
        code = code.replace(long, short)
    script = (INTEGRATION_PRELUDES.get((file, section, index), "")
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
    if 'run_name="run-001"' in code:  # what the Quick start says close() prints
        assert "closed run run-001: 3,000 of 3,000 points delivered" in done.stderr, done.stderr
    if offline:
        sync = subprocess.run([sys.executable, "-m", "metrana", "sync", "--url", readme_server],
                              capture_output=True, text=True, timeout=120)
        assert sync.returncode == 0, sync.stderr
    have = stored(readme_server)
    for run, points in EXPECTED[(file, section, index)].items():
        if points is None:
            assert have.get(run, 0) > 0, (run, done.stderr)
        else:
            assert have.get(run) == points, (run, have.get(run), done.stderr)

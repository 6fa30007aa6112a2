"""The README's Python examples run as written against a real ``metrana serve``, and the server
stores what they log: the README cannot drift from the library.

Every fenced ``python`` block of README.md runs in its own process. The harness adds only this:

- the URL ``http://127.0.0.1:8787`` (what ``metrana serve`` prints by default) is replaced by
  the test server's URL, and ``METRANA_INGESTION_URL`` points there too; ``METRANA_SPOOL_DIR``
  is the test's own directory;
- a prelude defines the placeholders the prose names as the reader's own code:
  ``train_step()`` (returns a loss and an accuracy) and ``scheduler`` (has ``.lr``);
- a block that logs without starting a run (the RL helpers, "after metrana.init(...)") runs
  inside a run the harness opens and closes: ``readme/snippets/<section>-<n>``.

``EXPECTED`` says, per block, which runs it must leave on the server with how many points. A new
block without an entry fails the test: write down what it should store.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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

# (section, index of the block in that section) -> {run: points stored}
EXPECTED: dict[tuple[str, int], dict[str, int]] = {
    ("Quick start", 0): {"my-workspace/my-project/run-001": 3000},
    ("Three ways in", 0): {"ws/p/run-module": 1, "ws/p/run-session": 2, "ws/p/run-trio": 1},
    ("RL helpers", 0): {"readme/snippets/rl-helpers-1": 3},
    ("RL helpers", 1): {"readme/snippets/rl-helpers-2": 64 * 1000},
    # The offline example; the test then runs the `metrana sync --url` the README shows next.
    ("Guarantees", 0): {"ws/p/offline-001": 1},
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
    db = tmp_path_factory.mktemp("readme") / "readme.sqlite3"
    proc = subprocess.Popen([sys.executable, "-m", "metrana", "serve", "--port", "0", "--db",
                             str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if match := re.search(r"listening on (http://\S+)", line):
            url = match.group(1)
            break
    assert url, "metrana serve did not start"
    try:
        yield url
    finally:
        proc.terminate()
        proc.communicate(timeout=30)


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
    script = PRELUDE + code.replace(DEFAULT_URL, readme_server)
    own_run = "metrana.init(" not in code and "session(" not in code
    if own_run:
        slug = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
        script = (OPEN_RUN.format(run=f"{slug}-{index + 1}", url=readme_server) + script
                  + "\nmetrana.close()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
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
        assert have.get(run) == points, (run, have.get(run), done.stderr)

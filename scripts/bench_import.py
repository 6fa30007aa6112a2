"""Import speed: ``metrana import tensorboard`` into ``metrana serve`` on SQLite, against
plain ``metrana.log`` of the same points (the baseline), medians of several runs.

    python scripts/bench_import.py [--runs 3] [--steps 100000] [--repeat 5]

The event files are written once with torch's SummaryWriter (``train/loss`` at every step,
``train/lr`` every 100th), in parallel processes, under ``/tmp/metrana-bench-import``. Each
measurement uses a fresh server and database. Rows:

- ``import, whole command``: ``metrana import tensorboard LOGDIR --url URL`` timed from start
  to exit (interpreter start, imports, reading, delivery, closing): points / wall time.
- ``import, as reported``: the rate the command prints (from its start to the last run
  delivered: interpreter start and imports left out).
- ``metrana.log per point``: the same points, already in memory, logged one ``log(name,
  value, step=, timestamp=)`` call each, and delivered (the close included).
- ``metrana.log vectorized``: the same, in the vectorized calls the importer makes (what the
  importer costs beyond reading).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import start_serve, stop_serve  # noqa: E402

CACHE = Path("/tmp/metrana-bench-import")


def logdir(runs: int, steps: int) -> Path:
    """The event files (written once per size)."""
    root = CACHE / f"{runs}x{steps}"
    if not (root / "done").exists():
        procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-m",
                                   "tests.importexport.write_tensorboard",
                                   str(root / f"seed-{i}"), str(steps)], cwd=ROOT)
                 for i in range(runs)]
        for proc in procs:
            assert proc.wait() == 0
        (root / "done").touch()
    return root


def import_once(root: Path, points: int) -> tuple[float, float]:
    """(whole-command points/s, reported points/s) into a fresh server."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_serve(Path(tmp) / "db.sqlite3")
        try:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "metrana", "import", "tensorboard",
                                   str(root), "--url", url], capture_output=True, text=True,
                                  check=True, env={"METRANA_SPOOL_DIR": f"{tmp}/spool",
                                                   "PATH": "/usr/bin:/bin"})
            wall = time.perf_counter() - started
        finally:
            stop_serve(proc)
    match = re.search(r"imported ([\d,]+) points .* \(([\d,]+) points/s\)", done.stdout)
    assert match and int(match.group(1).replace(",", "")) == points, done.stdout
    return points / wall, float(match.group(2).replace(",", ""))


def log_once(root: Path, vectorized: bool) -> float:
    """Plain metrana.log of the same points (read beforehand, not timed): points/s."""
    import metrana
    from metrana._import.tensorboard import find_runs

    runs = [(source.name, source.read()) for source in find_runs(root)]
    total = sum(data.points for _, data in runs)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_serve(Path(tmp) / "db.sqlite3")
        try:
            started = time.perf_counter()
            for name, data in runs:
                with metrana.session(workspace_name="bench", project_name="log", run_name=name,
                                     ingestion_url=url, log_level="Warn",
                                     spool_dir=f"{tmp}/spool") as run:
                    for series in data.series:
                        if vectorized:
                            for a in range(0, len(series), 50_000):
                                run.log(series.name, series.values[a:a + 50_000],
                                        step=series.steps[a:a + 50_000],
                                        timestamp=series.timestamps[a:a + 50_000])
                            continue
                        log, name_ = run.log, series.name
                        for step, value, stamp in zip(series.steps.tolist(),
                                                      series.values.tolist(),
                                                      series.timestamps.tolist(), strict=True):
                            log(name_, value, step=step, timestamp=stamp)
                assert run.get_metrics().sent == data.points
            return total / (time.perf_counter() - started)
        finally:
            stop_serve(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = logdir(args.runs, args.steps)
    points = args.runs * (args.steps + (args.steps + 99) // 100)
    rows: dict[str, list[float]] = {"import, whole command": [], "import, as reported": [],
                                    "metrana.log per point": [], "metrana.log vectorized": []}
    for _ in range(args.repeat):  # alternating, so load on the machine hits every row alike
        whole, reported = import_once(root, points)
        rows["import, whole command"].append(whole)
        rows["import, as reported"].append(reported)
        rows["metrana.log per point"].append(log_once(root, vectorized=False))
        rows["metrana.log vectorized"].append(log_once(root, vectorized=True))
    print(f"medians of {args.repeat} runs; {time.strftime('%Y-%m-%d %H:%M')}; "
          f"{args.runs} runs x {args.steps:,} steps = {points:,} points; metrana serve on SQLite")
    for name, values in rows.items():
        print(f"{name:<28}{statistics.median(values):>12,.0f} points/s   "
              f"(min {min(values):,.0f}, max {max(values):,.0f})")


if __name__ == "__main__":
    main()

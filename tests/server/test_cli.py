"""``metrana serve`` / ``runs`` / ``export`` as a user runs them, in real processes."""

from __future__ import annotations

import csv
import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from metrana._cli import main


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str, Path]]:
    db = tmp_path / "cli.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--port", "0", "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        if match := re.search(r"listening on (http://\S+)", line):
            url = match.group(1)
            break
    assert url, proc.stderr.read() if proc.stderr else ""
    yield proc, url, db
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def post_small_run(url: str) -> None:
    """What a client that only knows the wire contract sends: plain JSON over HTTP."""
    with httpx.Client(base_url=url) as client:
        client.post("/v1/runs", json={"run": {"workspace": "ws", "project": "p", "runName": "r"},
                                      "createProjectIfMissing": True}).raise_for_status()
        client.post("/v1/runs:update", json={"sessionId": "7", "runUpdates": [{
            "workspace": "ws", "project": "p", "runName": "r",
            "series": [{"metricName": "loss", "scale": "ML_STEP", "labels": {"split": "train"},
                        "points": [{"step": str(i), "timestamp": f"2026-11-26T09:49:0{i}.5Z",
                                    "floatValue": i / 4} for i in range(5)]}],
            "rlSeries": [{"metricName": "reward", "environmentId": "env-1", "scale": "EPISODE",
                          "points": [{"majorStep": "10", "minorStep": "0", "floatValue": "NaN"}]}],
        }]}).raise_for_status()


def test_serve_prints_url_and_db_and_stops_cleanly_on_sigterm(served) -> None:  # type: ignore[no-untyped-def]
    """Startup names URL and database; SIGTERM exits 0 with the data committed."""
    proc, url, db = served
    post_small_run(url)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "stopped" in out
    assert main(["runs", "--db", str(db)]) == 0


def test_runs_lists_point_counts(served, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """`metrana runs` shows each run with its series and point counts, from file or URL."""
    _, url, db = served
    post_small_run(url)
    for source in (["--db", str(db)], ["--url", url]):
        assert main(["runs", *source]) == 0
        out = capsys.readouterr().out
        assert re.search(r"ws/p/r\s+-\s+2\s+6", out), out


def test_export_writes_every_point(served, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    """CSV and JSONL exports carry every point with its series identity and value."""
    _, url, db = served
    post_small_run(url)
    assert main(["export", "ws/p/r", "--db", str(db)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["metric_name"], r["step"], r["value"]) for r in rows] == [
        ("loss", str(i), repr(i / 4)) for i in range(5)] + [("reward", "10", "nan")]
    assert json.loads(rows[0]["labels"]) == {"split": "train"}
    assert rows[0]["timestamp_ns"] == "1795686540500000000"
    assert main(["export", "ws/p/r", "--url", url, "--format", "jsonl"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(p["step"], p["value"]) for p in lines] == [(i, i / 4) for i in range(5)] + [(10, "NaN")]
    assert lines[-1]["environment_id"] == "env-1"


def test_export_of_unknown_run_or_bad_name_fails_clearly(
    served, capsys: pytest.CaptureFixture[str]  # type: ignore[no-untyped-def]
) -> None:
    """A wrong run name is an error message and exit code 2, not a traceback."""
    _, url, db = served
    assert main(["export", "ws/p/none", "--db", str(db)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["export", "just-a-name", "--db", str(db)]) == 2
    assert "WORKSPACE/PROJECT/RUN" in capsys.readouterr().err


def test_public_bind_without_api_key_warns(tmp_path: Path) -> None:
    """Listening beyond loopback without --api-key prints a warning."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "metrana", "serve", "--host", "0.0.0.0", "--port", "0",
         "--db", str(tmp_path / "w.db")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        assert "without --api-key" in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)

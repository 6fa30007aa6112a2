"""What a request may cost the server: bounded before anything is built from it."""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import start_serve, stop_serve


@pytest.fixture
def server_process(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    proc, url = start_serve(tmp_path / "limits.sqlite3", capture_stderr=False)
    yield proc, url
    stop_serve(proc)


def peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    assert match
    return int(match.group(1)) / 1024


def test_a_small_gzip_body_that_expands_into_millions_of_objects_is_refused_cheaply(
        server_process: tuple[subprocess.Popen[str], str]) -> None:
    """~60 KB of gzip expanding to 60 MiB of ``{}``: 413 naming the limit, the server's peak
    memory grows by far less than parsing it would take (3 GB before), and it keeps serving."""
    proc, url = server_process
    body = b'{"runUpdates":[' + b"{}," * (20 * 1024 * 1024) + b"{}]}"
    packed = gzip.compress(body, 9)
    assert len(packed) < 200_000
    before = peak_rss_mb(proc.pid)
    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/v1/runs:update", content=packed,
                               headers={"Content-Encoding": "gzip",
                                        "Content-Type": "application/json"})
        assert response.status_code == 413
        assert "JSON objects and arrays" in response.json()["message"]
        assert peak_rss_mb(proc.pid) - before < 400
        assert client.get("/api/runs").status_code == 200


def test_many_objects_in_a_plain_body_are_refused_before_parsing(
        server_process: tuple[subprocess.Popen[str], str]) -> None:
    """600,000 empty objects (1.8 MB): 413, not a parse into 600,000 dicts."""
    _, url = server_process
    body = b'{"runUpdates":[' + b"{}," * 600_000 + b"{}]}"
    with httpx.Client(base_url=url, timeout=60) as client:
        response = client.post("/v1/runs:update", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == 413

"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from metrana.server import ServerInfo

__all__ = ["DEFAULT_SIGINT", "metrana_command", "read_points", "run_spawned", "wait_until"]

# What a child process that a test interrupts needs first: Ctrl-C (SIGINT) raising
# KeyboardInterrupt. A suite launched with SIGINT ignored (`nohup … &`, some CI runners) hands
# that disposition down across exec, and Python then installs no handler of its own.
DEFAULT_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)"


def metrana_command(*args: str) -> list[str]:
    """``python -m metrana ARGS`` with Ctrl-C working whatever the suite was launched with."""
    return [sys.executable, "-c", f"{DEFAULT_SIGINT}; import runpy; "
            "runpy.run_module('metrana', run_name='__main__', alter_sys=True)", *args]


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait for an observable condition (not for a guessed duration)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def read_points(info: ServerInfo, run: str, workspace: str = "ws", project: str = "proj"
                ) -> dict[str, list[dict[str, Any]]]:
    """Every stored point of a run, by series description, read back over the read API."""
    out: dict[str, list[dict[str, Any]]] = {}
    with httpx.Client(base_url=info.url) as client:
        detail = client.get(f"/api/runs/{workspace}/{project}/{run}").json()
        for s in detail["series"]:
            name = s["metric_name"]
            if s["kind"] == "standard" and s["scale"] != "ML_STEP":
                name += f"[{s['scale']}]"
            if s["labels"]:
                name += "{" + ",".join(f"{k}={v}" for k, v in sorted(s["labels"].items())) + "}"
            if s["kind"] == "rl":
                name += f"@{s['environment_id']}/{s['episode']}"
            out[name] = client.get(
                f"/api/runs/{workspace}/{project}/{run}/series/{s['id']}/points").json()["points"]
    return out


def run_spawned(target: Callable[..., Any], *args: Any, timeout: float = 90) -> None:
    """``target(*args)`` in a fresh (spawned) interpreter, as a script of its own would run:
    its forks, signal handlers and exit are its own, not the test process's. It must succeed."""
    import multiprocessing

    runner = multiprocessing.get_context("spawn").Process(target=target, args=args)
    runner.start()
    runner.join(timeout)
    assert runner.exitcode == 0, f"exit code {runner.exitcode}"

"""Helpers the tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from metrana.server import ServerInfo

__all__ = ["read_points", "wait_until"]


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

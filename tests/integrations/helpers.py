"""Shared by the integration tests: run names, reading series back by metric name."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from metrana.server import ServerInfo


def run_name(prefix: str = "run") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def series(info: ServerInfo, run: str, workspace: str = "ws", project: str = "proj"
           ) -> list[dict[str, Any]]:
    """Every series of a run with its points: metric_name, labels, environment_id, points."""
    out = []
    with httpx.Client(base_url=info.url) as client:
        detail = client.get(f"/api/runs/{workspace}/{project}/{run}")
        detail.raise_for_status()
        for s in detail.json()["series"]:
            points = client.get(
                f"/api/runs/{workspace}/{project}/{run}/series/{s['id']}/points").json()["points"]
            out.append({**s, "points": points})
    return out


def attributes(info: ServerInfo, run: str, workspace: str = "ws", project: str = "proj"
               ) -> dict[str, Any]:
    """The run's attributes as {path: value}."""
    detail = httpx.get(f"{info.url}/api/runs/{workspace}/{project}/{run}").json()
    return {path: a["value"] for path, a in detail["attributes"].items()}

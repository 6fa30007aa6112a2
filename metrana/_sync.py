"""``metrana sync``: deliver spools left on disk (offline runs, crashed or timed-out sessions).

Idempotent by construction: a segment is deleted only after every record in it was answered,
and the server keys points by series and step, so syncing twice, or again after a crash
mid-sync, stores each point once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ._actors.dispatcher import RetryPolicy, RunTarget, post_with_retries
from ._actors.recovery import replay_directory
from ._config import DEFAULT_SPOOL_DIR, HOSTED_INGESTION_URL
from ._exceptions import MetranaApiError, MetranaError
from ._spool import read_manifest, run_directories, segments
from ._stats import Counters
from ._wire import encode_update

__all__ = ["SyncReport", "sync"]


@attrs.frozen
class SyncReport:
    """What one ``sync()`` did."""

    runs: int
    delivered: int
    rejected: int
    damaged_records: int
    segments_in_use: int
    errors: tuple[str, ...]


def sync(
    path: str | os.PathLike[str] | None = None,
    *,
    ingestion_url: str | None = None,
    api_key: str | None = None,
    retry: RetryPolicy | None = None,
) -> SyncReport:
    """Create each spooled run on the service and deliver its points, oldest first.

    Args:
        path: a run's spool directory, or a directory above several (default: the spool root,
            ``METRANA_SPOOL_DIR`` or ``~/.metrana/spool``).
        ingestion_url: the service (default ``METRANA_INGESTION_URL``, else the URL the run was
            logged with, else the hosted service).
        api_key: default ``METRANA_API_KEY``.
    """
    root = Path(path or os.environ.get("METRANA_SPOOL_DIR") or DEFAULT_SPOOL_DIR).expanduser()
    if not root.exists():
        raise MetranaError(f"no spool at {root}")
    return trio.run(_sync, root, ingestion_url or os.environ.get("METRANA_INGESTION_URL"),
                    api_key or os.environ.get("METRANA_API_KEY"), retry or RetryPolicy())


async def _sync(root: Path, url: str | None, api_key: str | None, policy: RetryPolicy) -> SyncReport:
    errors: list[str] = []
    totals = {"delivered": 0, "rejected": 0, "damaged": 0, "in_use": 0, "runs": 0}
    for directory in run_directories(root):
        manifest = read_manifest(directory)
        if manifest is None or not segments(directory):
            continue
        base = (url or manifest.get("ingestion_url") or HOSTED_INGESTION_URL).rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with httpx.AsyncClient(base_url=base + "/v1", headers=headers, timeout=60) as client:
            try:
                await _create(client, manifest, policy)
            except MetranaError as exc:
                errors.append(f"{directory}: {exc}")
                continue
            target = RunTarget(0, manifest["workspace"], manifest["project"], manifest["run_name"])
            def report(error: BaseException, where: Path = directory) -> None:
                errors.append(f"{where}: {error}")

            result = await replay_directory(client, directory, target, policy, Counters(), report)
            if result.stopped is not None:
                errors.append(f"{directory}: stopped, the service did not take the points: "
                              f"{result.stopped}; what is left stays in the spool: run sync "
                              "again once the service answers")
        totals["runs"] += 1
        totals["delivered"] += result.delivered
        totals["rejected"] += result.rejected
        totals["damaged"] += result.damaged
        totals["in_use"] += result.skipped_in_use
    return SyncReport(totals["runs"], totals["delivered"], totals["rejected"], totals["damaged"],
                      totals["in_use"], tuple(errors))


async def _create(client: httpx.AsyncClient, manifest: dict[str, Any], policy: RetryPolicy) -> None:
    run: dict[str, Any] = {"workspace": manifest["workspace"], "project": manifest["project"],
                           "runName": manifest["run_name"]}
    if manifest.get("experiment"):
        run["experiment"] = manifest["experiment"]
    body: dict[str, Any] = {"run": run, "createProjectIfMissing": True}
    if manifest.get("aggregation_rules"):
        body["aggregationRules"] = manifest["aggregation_rules"]
    counters = Counters()
    headers = {"Content-Type": "application/json"}
    response = await post_with_retries(client, "/runs", json.dumps(body).encode(), policy,
                                       counters, headers=headers)
    if response.status_code not in (200, 409):
        raise MetranaApiError(f"creating the run failed with HTTP {response.status_code}: "
                              f"{response.text[:300]}", status=response.status_code)
    attributes = manifest.get("attributes") or []
    if attributes:
        update = encode_update(0, manifest["workspace"], manifest["project"],
                               manifest["run_name"], (), attributes)
        response = await post_with_retries(client, "/runs:update", update, policy, counters,
                                           headers=headers)
        if not 200 <= response.status_code < 300:
            raise MetranaApiError(f"sending the run config failed with HTTP "
                                  f"{response.status_code}", status=response.status_code)

"""``metrana sync``: deliver spools left on disk (offline runs, crashed or timed-out sessions).

Idempotent by construction: a segment is deleted only after every record in it was answered,
and the server keys points by series, session and step, so syncing twice, or again after a
crash mid-sync, stores each point once. The run is created exactly as a logger creates it
(:func:`metrana._actors.run_creator.create_run`); the replay is the Recovery actor's
(:mod:`metrana._actors.replay`), except that sync stops at the first request the service will
not take instead of waiting for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from ._actors.replay import replay_directory
from ._actors.run_creator import RunSpec, create_run
from ._config import DEFAULT_SPOOL_DIR, HOSTED_INGESTION_URL, is_local_url, normalize_ingestion_url
from ._exceptions import MetranaError, NoMetranaApiKeyError
from ._spool import read_manifest, remove_run_directory, run_directories, segments
from ._stats import Counters
from ._transport import RetryPolicy, RunTarget, make_client, post_with_retries, send_close
from ._wire import is_ok

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
    progress: Callable[[str], None] | None = None,
) -> SyncReport:
    """Create each spooled run on the service and deliver its points, oldest first.

    Args:
        path: a run's spool directory, or a directory above several (default: the spool root,
            ``METRANA_SPOOL_DIR`` or ``~/.metrana/spool``).
        ingestion_url: the service (default ``METRANA_INGESTION_URL``, else the URL the run was
            logged with, else the hosted service). A trailing ``/v1`` is ignored.
        api_key: default ``METRANA_API_KEY``.
        progress: called with one line of text as each run starts and ends (the CLI prints
            them): a sync to a slow or unreachable service otherwise looks like a hang.

    Raises:
        MetranaError: ``path`` does not exist.
        MetranaConfigError: ``ingestion_url`` is not an http(s) URL.
        NoMetranaApiKeyError: no API key, and a run would go to a non-loopback service; checked
            before anything is sent, as ``init()`` does.
    """
    root = Path(path or os.environ.get("METRANA_SPOOL_DIR") or DEFAULT_SPOOL_DIR).expanduser()
    if not root.exists():
        raise MetranaError(f"no spool at {root}")
    url = ingestion_url or os.environ.get("METRANA_INGESTION_URL") or None
    if url is not None:
        url = normalize_ingestion_url(url)
    key = api_key or os.environ.get("METRANA_API_KEY") or None
    if key is None:
        _require_key_for_remote(root, url)
    return trio.run(_sync, root, url, key, retry or RetryPolicy(), progress)


async def _finish_run(client: httpx.AsyncClient, directory: Path, manifest: dict[str, Any],
                      policy: RetryPolicy, root: Path, errors: list[str]) -> None:
    """Everything of the run is delivered: send the close its last session recorded (so it
    shows finished), then remove its spool directory, and the parents it leaves empty."""
    if manifest.get("closed"):
        run = RunTarget(0, manifest["workspace"], manifest["project"], manifest["run_name"])
        try:
            response = await send_close(client, run, policy, Counters(), give_up_if_definite=True)
        except MetranaError as exc:
            errors.append(f"{directory}: the run's points are delivered, its close is not: {exc}")
            return
        if not is_ok(response.status_code):
            errors.append(f"{directory}: the run's points are delivered, its close was refused "
                          f"with HTTP {response.status_code}: {response.text[:500]}")
            return
    remove_run_directory(directory, root)


def _require_key_for_remote(root: Path, url: str | None) -> None:
    """Fail at once, as ``init()`` does, when a run would go to a non-loopback service without
    a key: it would answer 401 (or never), after retries that look like a hang."""
    if url is not None:
        targets = {url}
    else:
        targets = set()
        for directory in run_directories(root):
            manifest = read_manifest(directory)
            if manifest is not None and segments(directory):
                targets.add(str(manifest.get("ingestion_url") or HOSTED_INGESTION_URL))
    remote = sorted(target for target in targets if not is_local_url(target))
    if remote:
        raise NoMetranaApiKeyError(
            f"no API key to send spooled points to {', '.join(remote)}: pass api_key= (CLI: "
            "--api-key KEY) or set METRANA_API_KEY; to deliver them to a local server instead, "
            "pass ingestion_url= (CLI: --url), e.g. http://127.0.0.1:8787 (a loopback server "
            "needs no key)"
        )


async def _sync(root: Path, url: str | None, api_key: str | None, policy: RetryPolicy,
                progress: Callable[[str], None] | None = None) -> SyncReport:
    def tell(message: str) -> None:
        if progress is not None:
            progress(message)

    errors: list[str] = []
    totals = {"delivered": 0, "rejected": 0, "damaged": 0, "in_use": 0, "runs": 0}
    for directory in run_directories(root):
        manifest = read_manifest(directory)
        if manifest is None or not (segments(directory) or manifest.get("closed")):
            continue
        base = (url or manifest.get("ingestion_url") or HOSTED_INGESTION_URL).rstrip("/")
        name = f"{manifest['workspace']}/{manifest['project']}/{manifest['run_name']}"
        tell(f"{name}: sending {len(segments(directory))} spool segment(s) to {base} ...")
        async with make_client(base + "/v1", api_key, timeout=60) as client:
            try:
                spec = RunSpec.from_manifest(manifest)
                # A refused connection is not retried: sync says so at once, naming the URL.
                await create_run(lambda path, body: post_with_retries(
                    client, path, body, policy, Counters(), give_up_if_definite=True), spec, 0)
            except MetranaError as exc:
                errors.append(f"{directory}: {exc}")
                tell(f"{name}: not delivered: {exc}")
                continue
            target = RunTarget(0, manifest["workspace"], manifest["project"], manifest["run_name"])
            def report(error: BaseException, where: Path = directory) -> None:
                errors.append(f"{where}: {error}")

            result = await replay_directory(client, directory, target, policy, Counters(), report)
            if result.stopped is not None:
                errors.append(f"{directory}: stopped, the service did not take the points: "
                              f"{result.stopped}; what is left stays in the spool: run sync "
                              "again once the service answers")
            elif not segments(directory):
                await _finish_run(client, directory, manifest, policy, root, errors)
        tell(f"{name}: {result.delivered:,} points delivered, {result.rejected:,} rejected")
        totals["runs"] += 1
        totals["delivered"] += result.delivered
        totals["rejected"] += result.rejected
        totals["damaged"] += result.damaged
        totals["in_use"] += result.skipped_in_use
    return SyncReport(totals["runs"], totals["delivered"], totals["rejected"], totals["damaged"],
                      totals["in_use"], tuple(errors))

"""Retries: backoff with jitter, Retry-After honoured, 4xx (but 408/429) not retried.

Narrow unit tests on httpx.MockTransport with trio's autojump clock: no real sleeping.
"""

from __future__ import annotations

import httpx
import pytest
import trio

import metrana
from metrana._actors.dispatcher import RetryPolicy, post_with_retries
from metrana._stats import Counters


def client_answering(statuses: list[int], seen: list[float], headers: dict[str, str] | None = None
                     ) -> httpx.AsyncClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(trio.current_time())
        status = statuses.pop(0) if statuses else 200
        return httpx.Response(status, headers=headers or {}, json={})

    return httpx.AsyncClient(base_url="http://svc/v1", transport=httpx.MockTransport(handler))


async def test_transient_statuses_are_retried_until_success(autojump_clock: trio.abc.Clock) -> None:
    """503, 429, 408, 500 are retried with growing delays; success ends it."""
    seen: list[float] = []
    counters = Counters()
    async with client_answering([503, 429, 408, 500], seen) as client:
        response = await post_with_retries(client, "/runs:update", b"{}", RetryPolicy(), counters)
    assert response.status_code == 200
    assert (counters.requests, counters.retries) == (5, 4)
    gaps = [b - a for a, b in zip(seen, seen[1:], strict=False)]
    policy = RetryPolicy()
    for attempt, gap in enumerate(gaps):
        full = policy.initial * policy.multiplier ** attempt
        assert full / 2 <= gap <= full + 1e-9  # jittered within [d/2, d]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
async def test_client_errors_are_not_retried(status: int, autojump_clock: trio.abc.Clock) -> None:
    """A 4xx other than 408/429 is returned at once: retrying cannot help."""
    seen: list[float] = []
    async with client_answering([status], seen) as client:
        response = await post_with_retries(client, "/x", b"{}", RetryPolicy(), Counters())
    assert response.status_code == status and len(seen) == 1


async def test_retry_after_is_honoured(autojump_clock: trio.abc.Clock) -> None:
    """Retry-After: 7 makes the next attempt wait at least 7 seconds."""
    seen: list[float] = []
    async with client_answering([429], seen, {"Retry-After": "7"}) as client:
        await post_with_retries(client, "/x", b"{}", RetryPolicy(), Counters())
    assert seen[1] - seen[0] >= 7


async def test_budget_exhausted_is_a_connection_error(autojump_clock: trio.abc.Clock) -> None:
    """After max_attempts transient failures: MetranaConnectionError naming the last status."""
    seen: list[float] = []
    async with client_answering([503] * 20, seen) as client:
        with pytest.raises(metrana.MetranaConnectionError, match="HTTP 503"):
            await post_with_retries(client, "/x", b"{}", RetryPolicy(max_attempts=4), Counters())
    assert len(seen) == 4


def test_backoff_is_capped() -> None:
    """Delays never exceed max_delay (without Retry-After)."""
    policy = RetryPolicy()
    assert max(policy.delay(n, None) for n in range(40)) <= policy.max_delay
    assert policy.delay(0, 1000.0) == policy.max_retry_after


async def test_bodies_are_gzipped_for_remote_services_only() -> None:
    """A non-loopback service gets gzip bodies (and says so); loopback gets plain JSON."""
    import gzip
    import json

    import metrana
    from metrana._config import resolve_settings
    from metrana._engine import EngineOptions
    from metrana._trio_session import TrioSession

    seen: list[tuple[str | None, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers.get("content-encoding"), request.content))
        return httpx.Response(200, json={})

    for url in ("https://metrics.example.com", "http://127.0.0.1:9"):
        settings = resolve_settings({"workspace_name": "w", "project_name": "p", "run_name": "r",
                                     "ingestion_url": url, "api_key": "k",
                                     "close_strategy": "CompleteAll"}, environ={})
        run = TrioSession(settings,
                          options=EngineOptions(transport=httpx.MockTransport(handler)))
        async with run.running(init_timeout=5):
            run.log("loss", 1.0)
            assert (await run.aclose()).sent == 1
        assert isinstance(run, metrana.TrioSession)
    (remote_encoding, remote_body), (local_encoding, local_body) = [
        s for s in seen if b"loss" in (gzip.decompress(s[1]) if s[0] == "gzip" else s[1])]
    assert remote_encoding == "gzip" and local_encoding is None
    for body in (json.loads(gzip.decompress(remote_body)), json.loads(local_body)):
        (series,) = body["runUpdates"][0]["series"]
        assert (series["metricName"], series["points"][0]["floatValue"]) == ("loss", 1.0)

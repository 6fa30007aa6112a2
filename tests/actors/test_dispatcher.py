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

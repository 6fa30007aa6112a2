"""A crashing actor is surfaced, never a hang: log() goes on, close() returns and reports."""

from __future__ import annotations

import sys

import httpx
import pytest

import metrana

if sys.version_info < (3, 11):
    from exceptiongroup import ExceptionGroup


def test_a_crashed_dispatcher_is_reported_and_nothing_hangs() -> None:
    """A bug in the transport (not a network error) kills a dispatcher: the error reaches the
    error strategy, later log() calls do not raise, and close() returns with the loss counted."""

    def broken(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/runs"):
            return httpx.Response(200, json={})
        raise RuntimeError("bug in a transport")

    run = metrana.session(workspace_name="w", project_name="p", run_name="r",
                          ingestion_url="http://127.0.0.1:9", error_strategy="RaiseOnClose",
                          spool_dir=None, close_strategy="CompleteAll", log_level="Off",
                          transport=httpx.MockTransport(broken), init_timeout=5)
    run.log("loss", 1.0)
    with pytest.raises(metrana.MetranaLoggerClosedError, match="before the flush completed"):
        run.flush(timeout=10)  # released, not hung, when the engine stopped
    for i in range(100):
        run.log("loss", float(i))  # the training loop is not interrupted
    with pytest.raises(ExceptionGroup) as group:
        run.close(timeout=5)
    assert any("stopped unexpectedly" in str(e) and "bug in a transport" in str(e)
               for e in group.value.exceptions)
    metrics = run.get_metrics()
    assert metrics.sent == 0 and metrics.discarded == metrics.logged == 101
    assert isinstance(group.value.exceptions[0], metrana.MetranaError)

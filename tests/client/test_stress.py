"""Everything at once: threads, a forked child, an outage and a resumed run — every point
stored exactly once, or counted in a drop field."""

from __future__ import annotations

import json
import multiprocessing
import threading
import uuid
from pathlib import Path

import pytest

import metrana
from metrana._transport import RetryPolicy
from metrana.server import ServerInfo
from tests.faults import FaultProxy
from tests.helpers import read_points, wait_until

THREADS = 4
PER_THREAD = 6000
CHILD = 2000
RESUMED = 3000


def _child(report: str) -> None:
    """A forked worker: logs through the parent's (inherited) run and exits without close()."""
    for i in range(CHILD):
        metrana.log("child/loss", 9_000_000.0 + i)
    # The process's exit delivers (or spools) these points; what it did is written down here.
    current = metrana.get_metrics()
    Path(report).write_text(json.dumps({"logged": current.logged}))


def drops(m: metrana.Metrics) -> int:
    return m.discarded + m.rejected + m.failed + m.invalid + m.in_doubt + m.dropped_backpressure


@pytest.mark.slow
def test_threads_fork_outage_and_resume_store_every_point_exactly_once(
        proxy: FaultProxy, live_server: ServerInfo, tmp_path: Path) -> None:
    name = f"stress-{uuid.uuid4().hex[:8]}"
    retry = RetryPolicy(initial=0.01, multiplier=1.5, max_delay=0.05, max_attempts=4)
    # close_timeout: how long the child, exiting while the service answers 503 (busy, not
    # gone), waits for it before spooling; the parent closes with a timeout of its own.
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=proxy.url, retry=retry, log_level="Off", close_timeout=3)
    halfway = threading.Barrier(THREADS + 1)
    resume = threading.Event()

    def worker(t: int) -> None:
        for i in range(PER_THREAD):
            if i == PER_THREAD // 2:
                halfway.wait()
                resume.wait()
            # a name of its own, one shared by all threads, and fresh names first used now
            metrana.log(f"t{t}/loss" if i % 3 else ("shared" if i % 2 else f"new{i % 50}"),
                        1_000_000.0 * (t + 1) + i)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    halfway.wait()
    metrana.flush()
    proxy.fail_next(10**7, 503)  # the service goes away mid-run
    resume.set()
    wait_until(lambda: metrana.get_metrics().spooled > 0)
    report = tmp_path / "child.json"
    child = multiprocessing.get_context("fork").Process(target=_child, args=(str(report),))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    for thread in threads:
        thread.join()
    proxy.recover()  # ...and comes back
    first = metrana.close(timeout=60)
    assert first.logged == THREADS * PER_THREAD and drops(first) == 0
    assert first.spooled == 0 and first.sent == first.logged

    # The run is resumed: it first delivers what the child left in the spool, then its own.
    metrana.init(workspace_name="ws", project_name="proj", run_name=name,
                 ingestion_url=live_server.url, log_level="Off")
    for i in range(RESUMED):
        metrana.log("shared", 8_000_000.0 + i)
    second = metrana.close()
    assert (second.sent, second.spooled, drops(second)) == (RESUMED, 0, 0)
    assert json.loads(report.read_text())["logged"] == CHILD

    points = read_points(live_server, name)
    values = sorted(p["value"] for series in points.values() for p in series)
    expected = sorted([1_000_000.0 * (t + 1) + i for t in range(THREADS) for i in range(PER_THREAD)]
                      + [9_000_000.0 + i for i in range(CHILD)]
                      + [8_000_000.0 + i for i in range(RESUMED)])
    assert values == expected  # every point, exactly once
    shared = [p["value"] for p in points["shared"]]
    assert shared[-RESUMED:] == [8_000_000.0 + i for i in range(RESUMED)]  # resumed: appended

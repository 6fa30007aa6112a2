"""Where a resumed run's series end on the service, so that a rerun cannot overlay them.

Running a script twice under one run name used to store the second session's points among
the first's: an RL curve zig-zagged between two trainings, a manual-step series got its steps
logged twice. So at ``init()`` of a run that already exists, the run creator asks the service
once (``POST /api/query/series``, the read API's listing of a run's series) for the last stored
step of each series — for an RL series its last ``rl_step``, per (metric, scale, env_id,
episode, labels) — and the StepCounter refuses a point that would go before it (an
``rl_step`` lower than that, a manual ``step`` not after it), exactly as it refuses a
decreasing step within a session. Automatic steps are not checked: the service places a new
session's after everything stored.

The StepCounter waits for the answer before numbering anything (``StoredEnds.ready``, in
:mod:`.step_counter`); the question is bounded in time like the run's creation. A service
without the route (the hosted one answers 404/405) means no check, as before; a forked child
does not ask (it logs alongside its parent, it is not a rerun), nor does a session that could
not reach the service.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson
import trio

from .._stats import Counters
from .._transport import RetryPolicy, describe_failure, is_transient, post
from .._wire import JSON_HEADERS, is_ok
from .step_counter import Identity

__all__ = ["ENDS_PATH", "ENDS_TIMEOUT", "fetch_ends"]

ENDS_PATH = "/api/query/series"  # on the service's root, not under /v1
ENDS_TIMEOUT = 10.0  # as long as init() waits for the run's creation by default
_ATTEMPTS = 3
_NO_ROUTE = (404, 405, 501)  # a service that does not know the question (the hosted one)


def _parse(body: Any) -> dict[Identity, int]:
    out: dict[Identity, int] = {}
    for row in body["series"]:
        if row["last_step"] is None:
            continue  # a series without points yet bounds nothing
        labels = tuple(sorted((str(k), str(v)) for k, v in row["labels"].items()))
        episode = row["episode"]
        identity = (row["kind"] == "rl", row["metric"], row["scale"], labels,
                    row["environment"] or "", None if episode is None else int(episode))
        out[identity] = int(row["last_step"])
    return out


async def fetch_ends(client: httpx.AsyncClient, service: str, workspace: str, project: str,
                     run: str, *, policy: RetryPolicy, counters: Counters,
                     say: Callable[[str, str], None], timeout: float = ENDS_TIMEOUT
                     ) -> dict[Identity, int] | None:
    """The last stored step of each series of the run (``service``: the ingestion URL), or
    None when the service cannot say — then nothing is checked and the user is told why (only
    in the debug log when the service simply does not have the route)."""
    url = service.rstrip("/") + ENDS_PATH
    body = {"workspace": workspace, "project": project, "runs": [run]}
    name = f"{workspace}/{project}/{run}"
    reason = f"no answer within {timeout:g}s"
    with trio.move_on_after(timeout):
        for attempt in range(_ATTEMPTS):
            counters.requests += 1
            try:
                response = await post(client, url, orjson.dumps(body), JSON_HEADERS)
            except httpx.TransportError as exc:
                reason = describe_failure(exc)
            else:
                status = response.status_code
                if status in _NO_ROUTE:
                    say("DEBUG", f"{url} answered HTTP {status}: this service does not say "
                                 f"where the series of run {name} end; a rerun's points are "
                                 "not checked")
                    return None
                if is_ok(status):
                    try:
                        return _parse(response.json())
                    except (ValueError, KeyError, TypeError, AttributeError) as exc:
                        reason = f"an answer that could not be read ({exc!r:.200})"
                        break
                reason = f"HTTP {status}"
                if not is_transient(status):
                    break
            if attempt + 1 < _ATTEMPTS:
                counters.retries += 1
                await trio.sleep(policy.delay(attempt, None))
    say("WARNING", f"could not learn where the series of run {name} end ({reason}); this "
                   "session's manual steps and rl_steps are not checked against the points "
                   "the run already has")
    return None

"""What rank 0 adds to its close summary in a run a job's processes write together: the run's
total so far, as the server has it (each process's own summary speaks for that process only).

One read of the run (``POST /api/query/run``), bounded to 2 s, and only by the process of rank
0 of a job, after its own points are delivered: a slow or absent server costs at most that,
and nothing is said then.
"""

from __future__ import annotations

from ._config import Settings
from ._distributed import process_rank

__all__ = ["run_total"]

TIMEOUT_S = 2.0


def run_total(settings: Settings) -> str | None:
    """``the run holds N points from K processes (J still open)``, for rank 0 of a job; None
    for any other process, offline, or when the server does not answer in time."""
    rank = process_rank()
    if settings.orchestration_id is None or settings.offline or rank is None or rank[0] != 0:
        return None
    from ._read_transport import HttpTransport  # only here: most runs never need it

    key = settings.api_key.get_secret_value() if settings.api_key is not None else None
    transport = HttpTransport(settings.ingestion_url, key, timeout=TIMEOUT_S)
    try:
        run = transport.call("run", {"workspace": settings.workspace_name,
                                     "project": settings.project_name,
                                     "run": settings.run_name})
    except Exception:  # noqa: BLE001 - a summary line is never worth an error at close
        return None
    finally:
        transport.close()
    points = sum(int(s.get("point_count", 0)) for s in run.get("series", []))
    processes = run.get("processes", [])
    still_open = sum(1 for p in processes if p.get("closed_ns") is None)
    return (f"the run holds {points:,} points from {len(processes)} processes of job "
            f"{settings.orchestration_id} ({still_open} still open)")

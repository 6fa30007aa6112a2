"""Which job this process belongs to, and who it is among the job's writers.

Every process of a distributed job (torchrun's workers, a Slurm job's tasks, a Ray job's
actors, multiprocessing workers) calls ``metrana.init()`` with the same names. The job's
*orchestration id* lets them write one run without any of them knowing who goes first: the
first to reach the server creates the run and stores the id with it (in the same
transaction), the others find the run with the same id and join it. A run created by another
job (another id, or none) is not merged into: that is a rerun, and ``resume_strategy`` decides.

The id is, in order: ``init(orchestration_id=...)``, ``METRANA_ORCHESTRATION_ID``, then what the
launcher set — ``TORCHELASTIC_RUN_ID`` (torchrun; its default ``none``, without
``--rdzv-id``, is made unique by the host and the agent's pid), ``SLURM_JOB_ID`` (with ``.SLURM_STEP_ID``
when set, as ``<job>.<step>``: each ``srun`` step of a job is a job of its own),
``RAY_JOB_ID``. ``init()`` exports
the id it resolved as ``METRANA_ORCHESTRATION_ID``, so children it starts (multiprocessing
workers, subprocesses) inherit it and join the same run.

The *logger id* names this process among the run's writers (the points of
``log_distributed`` are kept per writer and step): ``init(logger_id=...)``, else the rank the
launcher gave (see :mod:`metrana._distributed`), else ``<host>:<pid>``.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, MutableMapping
from typing import Any

from ._distributed import process_rank

__all__ = ["ORCHESTRATION_ENV", "WRITER_LABEL", "export_orchestration_id", "resolve_logger_id",
           "resolve_orchestration_id", "writer_attributes"]

ORCHESTRATION_ENV = "METRANA_ORCHESTRATION_ID"
# The label that keeps each writer's points of a log_distributed series apart: the server
# serves the series merged across the values of this label (mean, min, max, count per step).
WRITER_LABEL = "writer"
_MAX_LENGTH = 256


def _launcher_id(env: Mapping[str, str]) -> str | None:
    """The job id a launcher put in the environment, if any."""
    torchrun = env.get("TORCHELASTIC_RUN_ID", "").strip()
    if torchrun == "none":
        # torchrun without --rdzv-id (or --standalone) names every job "none": the agent that
        # started this worker (its parent) is what the job's workers on this host share.
        return f"none@{socket.gethostname()}:{os.getppid()}"
    if torchrun:
        return torchrun
    slurm = env.get("SLURM_JOB_ID", "").strip()
    if slurm:
        step = env.get("SLURM_STEP_ID", "").strip()
        return f"{slurm}.{step}" if step else slurm
    return env.get("RAY_JOB_ID", "").strip() or None


def resolve_orchestration_id(given: str | None, environ: Mapping[str, str] | None = None, *,
                             launchers: bool = True) -> str | None:
    """The job's id: ``given``, else ``METRANA_ORCHESTRATION_ID``, else the launcher's
    (as the official client reads them; ``launchers=False``, as with ``distributed="off"``,
    skips them). None: no job.

    Raises:
        ValueError: ``given`` is not a non-empty string of at most 256 characters.
    """
    env = os.environ if environ is None else environ
    if given is None:
        given = env.get(ORCHESTRATION_ENV, "").strip() or None
        source = ORCHESTRATION_ENV
    else:
        source = "orchestration_id"
    if given is not None:
        if not isinstance(given, str) or not given.strip() or len(given) > _MAX_LENGTH:
            raise ValueError(f"{source}={given!r} must be a non-empty string of at most "
                             f"{_MAX_LENGTH} characters (an id of the job, the same in "
                             "every process)")
        return given.strip()
    return _launcher_id(env) if launchers else None


def export_orchestration_id(orchestration_id: str | None,
                            environ: MutableMapping[str, str] | None = None) -> None:
    """Make the id this process resolved the one its children resolve."""
    if orchestration_id is not None:
        (os.environ if environ is None else environ)[ORCHESTRATION_ENV] = orchestration_id


def resolve_logger_id(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """This process's name among the run's writers: ``given``, the rank, or host:pid.

    Raises:
        ValueError: ``given`` is empty or longer than 256 characters.
    """
    if given is not None:
        if not isinstance(given, str) or not given.strip() or len(given) > _MAX_LENGTH:
            raise ValueError(f"logger_id={given!r} must be a non-empty string of at most "
                             f"{_MAX_LENGTH} characters, different in each process of the job")
        return given.strip()
    rank = process_rank(environ)
    if rank is not None:
        return str(rank[0])
    return f"{socket.gethostname()}:{os.getpid()}"


def writer_attributes(logger_id: str, session_id: int) -> list[dict[str, Any]]:
    """What a process of a job says of itself when it joins the run (the dashboard's list of
    writers: host, and the session whose liveness the server tracks)."""
    name = re.sub(r"[^a-zA-Z0-9._\-:]", "_", logger_id)
    return [{"path": f"sys/writers/{name}/host", "stringValue": socket.gethostname()},
            {"path": f"sys/writers/{name}/session", "stringValue": str(session_id)}]

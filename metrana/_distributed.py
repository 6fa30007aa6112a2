"""Which rank of a distributed job this process is, and what that means for logging.

In a distributed job every process runs the same script, so every rank calls
``metrana.init()``. ``distributed=`` (env ``METRANA_DISTRIBUTED``) says what happens then:

- ``auto`` (default): when the environment names this process's rank in a job of several
  (``RANK``/``WORLD_SIZE`` as torchrun, accelerate and deepspeed set them; else SLURM's or Open
  MPI's), every series this process logs gets the label ``rank=<RANK>``: the ranks' points of
  one metric stay apart instead of interleaving in one series;
- ``rank0``: only rank 0 logs; on the other ranks ``init()`` returns a session whose calls do
  nothing and which never touches the network (so no rank can stall the job);
- ``off``: the environment is ignored.

Nothing here waits on another rank: metrana never joins a collective.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["process_rank"]

# (rank variable, world size variable), in the order launchers are checked.
_LAUNCHERS = (
    ("RANK", "WORLD_SIZE"),  # torchrun, accelerate, deepspeed, lightning
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),
    ("PMI_RANK", "PMI_SIZE"),
)


def process_rank(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(rank, world size)`` when the environment says this is one process of several.

    The first launcher (in the order above) whose two variables are set decides: a world of
    one (``WORLD_SIZE=1``: torchrun with one process, even inside a Slurm job of several
    tasks) is not a distributed job, and gets no rank label.
    """
    env = os.environ if environ is None else environ
    for rank_name, size_name in _LAUNCHERS:
        rank, size = env.get(rank_name), env.get(size_name)
        if rank is None or size is None:
            continue
        try:
            rank_number, size_number = int(rank), int(size)
        except ValueError:
            continue
        if size_number > 1 and 0 <= rank_number < size_number:
            return rank_number, size_number
        return None
    return None

"""SystemSampler: system metrics every ``system_metrics_interval`` seconds while a run is open.

The readings (:class:`metrana._system_metrics.Sampler`: ``/proc`` through ``psutil``, GPUs
through NVML) block, so they run in a trio worker thread; this actor only waits on the
engine's loop and hands each reading to ``emit``, which queues it as points of ``system/…``
series (the session's SeriesTable and Inbox, like a ``log()`` call from another thread). The
caller's thread does none of this work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

__all__ = ["FIRST_SAMPLE_S", "SystemSampler"]

FIRST_SAMPLE_S = 1.0  # the first reading after at most this long (a short run gets one too)


class SystemSampler:
    def __init__(self, interval: float, emit: Callable[[list[tuple[str, float]], int], None],
                 say: Callable[[str, str], None]) -> None:
        self.interval = interval
        self._emit = emit
        self._say = say
        self.scope = trio.CancelScope()  # the engine cancels it when the run closes
        self.samples = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        with self.scope:
            try:
                from .._system_metrics import Sampler

                sampler = await trio.to_thread.run_sync(Sampler, abandon_on_cancel=True)
            except ImportError:
                self._say("WARNING", "system metrics need psutil (pip install psutil); none "
                                     "are recorded (system_metrics_interval=0 turns them off)")
                return
            except Exception as exc:  # noqa: BLE001 - never the run's end: say it, go on
                self._say("WARNING", f"cannot read system metrics ({exc!r}); none are recorded")
                return
            try:
                await trio.sleep(min(self.interval, FIRST_SAMPLE_S))
                while True:
                    try:
                        values = await trio.to_thread.run_sync(sampler.sample,
                                                               abandon_on_cancel=True)
                    except Exception as exc:  # noqa: BLE001 - as above
                        self._say("WARNING", f"reading system metrics failed ({exc!r}); no "
                                             "more are recorded for this run")
                        return
                    self._emit(values, time.time_ns())
                    self.samples += 1
                    await trio.sleep(self.interval)
            finally:
                sampler.close()

"""SIGTERM in a process with an open run: write what it holds to the spool, then end as
SIGTERM would have.

SIGTERM is how worker processes are ended in the ordinary course of things: leaving
``with Pool(...)`` (``Pool.terminate()``), Slurm and Kubernetes before their SIGKILL. Its
default action ends the process on the spot, and every point still in memory with it,
silently. So while a run is open, and only if SIGTERM still has its default disposition (a
handler the user or a framework set is never replaced), metrana handles it: each open run
writes what it holds to its spool — fsync'd, within :data:`TERM_BOUND` seconds — and then the
default disposition is restored and SIGTERM sent again, so the process ends exactly as it
would have (killed by signal 15, no ``atexit``). A second SIGTERM meanwhile ends it at once.
What a worker spooled is delivered by the ``close()`` of its run in the parent, by the run's
next ``init()``, or by ``metrana sync``.

Only the main thread can set a signal handler: a run started from another thread installs
none. A forked child inherits the handler along with the run.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["TERM_BOUND", "install", "uninstall"]

TERM_BOUND = 2.0  # seconds the runs of a terminated process get to write to their spools

_spool_all: Callable[[float], None] | None = None  # given the deadline (time.monotonic())


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    try:
        if _spool_all is not None:
            _spool_all(time.monotonic() + TERM_BOUND)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)


def install(spool_all: Callable[[float], None]) -> None:
    """Handle SIGTERM with ``spool_all`` if this is the main thread and its disposition is
    still the default one."""
    global _spool_all
    _spool_all = spool_all
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        pass


def uninstall() -> None:
    """Give SIGTERM its default back, if the handler in place is still ours."""
    if threading.current_thread() is not threading.main_thread():
        return  # left in place: with no open run it only ends the process, as the default
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass

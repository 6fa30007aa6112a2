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
none. A forked child gets the default disposition back (it has no run of its own yet) and
installs the handler again if it logs.

Python runs a handler in the main thread, between two bytecodes. A signal that arrives just
before the main thread blocks in a C wait is never acted on while it waits — and a Pool worker
waits on its task queue's lock, which the terminating parent holds for good: with a handler in
place the worker would never end, and ``Pool.terminate()`` would wait for it forever. So in a
child process a watchdog thread learns of the signal from the wakeup file descriptor Python
writes every caught signal to; if the main thread has not begun handling it within
:data:`HANDLER_GRACE`, the watchdog does the same work and ends the process. (Not in a main
program: there an event loop of the user's may own the wakeup descriptor; the handler runs as
soon as the main thread runs Python again, and a scheduler's SIGKILL follows anyway.)
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

__all__ = ["HANDLER_GRACE", "TERM_BOUND", "install", "uninstall"]

TERM_BOUND = 2.0  # seconds the runs of a terminated process get to write to their spools
HANDLER_GRACE = 0.25  # how long the watchdog leaves the main thread to take the signal

_spool_all: Callable[[float], None] | None = None  # given the deadline (time.monotonic())
_claim = threading.Lock()  # held by whichever handles the SIGTERM: the main thread or watchdog
_watchdog: tuple[int, int, int] | None = None  # (pid, read fd, write fd) of this process's
_forked = False  # this process is a forked child


def _end(deadline: float) -> None:
    """Spool what the open runs hold, then end the process by SIGTERM's default action.

    The garbage collector is switched off first: the process is ending, and a full
    collection over a training process's heap, set off by the records being built, can take
    a large part of the bound on a busy machine."""
    gc.disable()
    try:
        if _spool_all is not None:
            _spool_all(deadline)
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # never expected: SIGTERM blocked everywhere; end anyway
        os._exit(128 + signal.SIGTERM)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if not _claim.acquire(blocking=False):
        return  # the watchdog is handling it and ends the process
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    _end(time.monotonic() + TERM_BOUND)


def _default_from_any_thread() -> None:
    """SIGTERM's default action, set from a thread that is not the main one (Python's
    ``signal.signal`` refuses to): libc's ``signal()``, or failing that, end at once."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.signal.restype = ctypes.c_void_p
        libc.signal(ctypes.c_int(signal.SIGTERM), ctypes.c_void_p(0))  # SIG_DFL
    except Exception:  # noqa: BLE001 - no libc to call: SIGKILL ends it just the same
        os.kill(os.getpid(), signal.SIGKILL)


def _watch(read_fd: int) -> None:
    """The watchdog: every caught signal's number arrives here; SIGTERM is acted on if the
    main thread does not take it in time."""
    try:
        while True:
            data = os.read(read_fd, 64)
            if not data:
                return  # uninstalled: the write end was closed
            if signal.SIGTERM not in data:
                continue
            time.sleep(HANDLER_GRACE)
            if _claim.acquire(blocking=False):
                _default_from_any_thread()
                _end(time.monotonic() + TERM_BOUND)
    except OSError:
        return
    finally:
        try:
            os.close(read_fd)
        except OSError:
            pass


def _start_watchdog() -> None:
    """In a child process (main thread): the watchdog, unless the wakeup fd is taken."""
    global _watchdog
    if _watchdog is not None and _watchdog[0] == os.getpid():
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        previous = None
    if previous != -1:  # someone else's (an event loop): leave it to them
        if previous is not None:
            signal.set_wakeup_fd(previous)
        os.close(read_fd)
        os.close(write_fd)
        return
    _watchdog = (os.getpid(), read_fd, write_fd)
    threading.Thread(target=_watch, args=(read_fd,), name="metrana-sigterm",
                     daemon=True).start()


def _stop_watchdog() -> None:
    global _watchdog
    if _watchdog is None or _watchdog[0] != os.getpid():
        return
    _, _, write_fd = _watchdog
    _watchdog = None
    try:
        previous = signal.set_wakeup_fd(-1)
        if previous != write_fd:  # replaced by someone since: theirs stays
            signal.set_wakeup_fd(previous)
    except ValueError:
        pass
    os.close(write_fd)  # the watchdog reads the end of the pipe and stops


def install(spool_all: Callable[[float], None]) -> None:
    """Handle SIGTERM with ``spool_all`` if this is the main thread and its disposition is
    still the default one; in a child process, with the watchdog too."""
    global _spool_all
    _spool_all = spool_all
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
            current = _on_sigterm
    except (ValueError, OSError):  # not the main interpreter, or no signals here
        return
    if current is _on_sigterm and (_forked or multiprocessing.parent_process() is not None):
        _start_watchdog()


def uninstall() -> None:
    """Give SIGTERM its default back, if the handler in place is still ours."""
    if threading.current_thread() is not threading.main_thread():
        return  # left in place: with no open run it only ends the process, as the default
    _stop_watchdog()
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


def _after_fork_in_child() -> None:
    """A forked child has no run of its own yet: SIGTERM's default back (a worker that never
    logs ends as it always did), the parent's watchdog descriptors closed, a fresh claim."""
    global _claim, _forked, _watchdog
    _claim = threading.Lock()
    _forked = True
    inherited, _watchdog = _watchdog, None
    if inherited is not None:
        _, read_fd, write_fd = inherited
        try:
            previous = signal.set_wakeup_fd(-1)
            if previous != write_fd:
                signal.set_wakeup_fd(previous)
        except ValueError:
            pass
        for fd in (read_fd, write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
    try:
        if signal.getsignal(signal.SIGTERM) is _on_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
    except (ValueError, OSError):
        pass


os.register_at_fork(after_in_child=_after_fork_in_child)

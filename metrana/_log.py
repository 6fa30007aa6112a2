"""metrana's voice: loguru, filtered by ``log_level`` before anything is formatted.

Every record metrana emits is bound with ``extra["metrana"] = True``, so a user who configures
loguru can route or silence them (``filter=lambda r: "metrana" not in r["extra"]``).

What the user sees by default. loguru's pre-configured handler (id 0, stderr) prints
``metrana._log:say:23 - …`` in front of every line: noise that tells the user nothing. While
that default handler is installed, metrana's records are printed instead by a stderr sink of
metrana's own, in a short format (time, level, ``metrana:``, message; the source location is
added only at Debug and Trace), and the default handler skips them. Only the default handler is
touched, and only for metrana's records: it keeps its id, level and format; sinks the user added
get metrana's records in the user's format. Once the user removes the default handler (the
usual first step of configuring loguru: ``logger.remove()``), metrana's sink stops printing too
and metrana's records go only where the user sends everything else.

Excluding records from an existing handler needs loguru's handler table (no public API adds a
filter to a handler); that access is guarded, and with an unknown loguru layout metrana simply
leaves loguru alone and its records print through the default handler as before.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from loguru import logger

from ._enums import LogLevel

__all__ = ["say"]

_RANK = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40,
         "CRITICAL": 50}
_THRESHOLD = {
    LogLevel.Trace: 5, LogLevel.Debug: 10, LogLevel.Info: 20, LogLevel.Success: 25,
    LogLevel.Warn: 30, LogLevel.Error: 40, LogLevel.Critical: 50, LogLevel.Off: 100,
}
_MARK = "metrana"
_voice = logger.bind(**{_MARK: True})
_install_lock = threading.Lock()
_installed = False

_SHORT = ("<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
          "<level>{message}</level>\n{exception}")
_WITH_SOURCE = ("<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <8}</level> | "
                "<level>{message}</level> <dim>({name}:{function}:{line})</dim>\n{exception}")


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when the sink was added.

    metrana adds its sink lazily, at its first message; by then pytest's capsys, a notebook or
    a daemon may have swapped ``sys.stderr`` for an object that is later closed.
    """

    def write(self, message: str) -> None:
        stream = sys.stderr
        if stream is not None:
            stream.write(message)

    def flush(self) -> None:
        stream = sys.stderr
        if stream is not None:
            stream.flush()

    def isatty(self) -> bool:  # loguru colours a terminal, as it does for its default handler
        stream = sys.stderr
        return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def _is_ours(record: Any) -> bool:
    return record["extra"].get(_MARK) is True


def _format(record: Any) -> str:
    """Short lines; the source location only where it helps (Debug, Trace)."""
    return _WITH_SOURCE if record["level"].no < _RANK["INFO"] else _SHORT


def _default_handler() -> Any:
    """loguru's pre-configured stderr handler (always id 0), or None once the user removed it."""
    handlers = getattr(getattr(logger, "_core", None), "handlers", None)
    return handlers.get(0) if isinstance(handlers, dict) else None


def _install() -> None:
    """Print metrana's records in metrana's format instead of the default handler's (once)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
        default = _default_handler()
        if default is None or not hasattr(default, "_filter"):
            return  # the user configured loguru (or its layout is unknown): leave it be
        previous = default._filter

        def skip_ours(record: Any) -> bool:
            return not _is_ours(record) and (previous is None or bool(previous(record)))

        default._filter = skip_ours

        def ours_while_default_installed(record: Any) -> bool:
            return _is_ours(record) and _default_handler() is default

        logger.add(_CurrentStderr(), level=0, format=_format, filter=ours_while_default_installed)


def say(configured: LogLevel, level: str, message: str) -> None:
    """Emit ``message`` at ``level`` if ``configured`` lets it through. Never raises.

    The record's source location is the caller of the caller (``Session._say``'s caller, the
    code that had something to say), shown at Debug and Trace.
    """
    if _RANK[level] >= _THRESHOLD[configured]:
        try:
            if not _installed:
                _install()
            try:
                _voice.opt(depth=2).log(level, "metrana: {}", message)
            except ValueError:  # a shallower stack than that: no location, same message
                _voice.log(level, "metrana: {}", message)
        except Exception:  # noqa: BLE001 - a broken sink must not break the training loop
            pass

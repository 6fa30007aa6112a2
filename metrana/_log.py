"""metrana's voice: loguru, filtered by ``log_level`` before anything is formatted."""

from __future__ import annotations

from loguru import logger

from ._enums import LogLevel

__all__ = ["say"]

_RANK = {"TRACE": 5, "DEBUG": 10, "INFO": 20, "SUCCESS": 25, "WARNING": 30, "ERROR": 40,
         "CRITICAL": 50}
_THRESHOLD = {
    LogLevel.Trace: 5, LogLevel.Debug: 10, LogLevel.Info: 20, LogLevel.Success: 25,
    LogLevel.Warn: 30, LogLevel.Error: 40, LogLevel.Critical: 50, LogLevel.Off: 100,
}


def say(configured: LogLevel, level: str, message: str) -> None:
    """Emit ``message`` at ``level`` if ``configured`` lets it through. Never raises."""
    if _RANK[level] >= _THRESHOLD[configured]:
        try:
            logger.log(level, "metrana: {}", message)
        except Exception:  # noqa: BLE001 - a broken sink must not break the training loop
            pass

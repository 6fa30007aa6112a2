"""Counters of what happened to every point, and the snapshot users see."""

from __future__ import annotations

import attrs

__all__ = ["Counters", "Metrics"]


@attrs.frozen
class Metrics:
    """A snapshot of the logger's counters (``metrana.get_metrics()``, ``close()``'s result).

    Every point ``log()`` accepted is, at any moment, in exactly one of: ``sent``
    (acknowledged by the service), ``spooled`` (durable on disk, waiting to be replayed),
    ``rejected`` (the service refused its batch), ``failed`` (could be neither delivered nor
    spooled), ``invalid`` (a step error), ``discarded`` (dropped by an Immediate or
    CompletePending close, or a close timeout without a spool), or ``pending`` (in memory).
    ``dropped_backpressure`` points were never accepted (DropNew). ``replayed`` counts points
    delivered from the spool, including those an earlier process left there.
    """

    logged: int
    sent: int
    pending: int
    spooled: int
    replayed: int
    dropped_backpressure: int
    discarded: int
    rejected: int
    failed: int
    invalid: int
    requests: int
    retries: int
    errors: int

    @property
    def dropped(self) -> int:
        """Points that did not reach the service, for any reason."""
        return (self.dropped_backpressure + self.discarded + self.rejected + self.failed
                + self.invalid)

    def summary(self) -> str:
        return (
            f"{self.sent:,} of {self.logged:,} points delivered, {self.spooled:,} spooled; "
            f"{self.discarded:,} discarded at close, {self.dropped_backpressure:,} dropped "
            f"(queue full), {self.rejected:,} rejected, {self.failed:,} failed, "
            f"{self.invalid:,} invalid; {self.requests:,} requests, {self.retries:,} retries"
        )


@attrs.define
class Counters:
    """Mutable counters, written by the engine's trio thread (and, for drops, the inbox lock)."""

    accepted: int = 0
    sent: int = 0
    spooled: int = 0
    replayed: int = 0
    dropped_backpressure: int = 0
    discarded: int = 0
    rejected: int = 0
    failed: int = 0
    invalid: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0

    def settled(self) -> int:
        return (self.sent + self.spooled + self.discarded + self.rejected + self.failed
                + self.invalid)

    def snapshot(self, queued: int = 0) -> Metrics:
        """``queued``: points still in the inbox, not yet taken by the engine."""
        settled = self.settled()
        accepted = self.accepted + queued
        return Metrics(
            logged=accepted + self.dropped_backpressure,
            sent=self.sent,
            pending=max(accepted - settled, 0),
            spooled=self.spooled,
            replayed=self.replayed,
            dropped_backpressure=self.dropped_backpressure,
            discarded=self.discarded,
            rejected=self.rejected,
            failed=self.failed,
            invalid=self.invalid,
            requests=self.requests,
            retries=self.retries,
            errors=self.errors,
        )

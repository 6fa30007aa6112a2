"""Counters of what happened to every point, and the snapshot users see."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._enums import CloseStrategy

if TYPE_CHECKING:
    from ._config import Settings

__all__ = ["Counters", "Metrics", "close_advice"]


@attrs.frozen
class Metrics:
    """A snapshot of the logger's counters (``metrana.get_metrics()``, ``close()``'s result).

    Every point ``log()`` accepted is, at any moment, in exactly one of: ``sent``
    (acknowledged by the service), ``spooled`` (durable on disk, waiting to be replayed),
    ``rejected`` (the service refused it), ``failed`` (could be neither delivered nor
    spooled), ``invalid`` (a step error), ``discarded`` (dropped by an Immediate or
    CompletePending close), ``in_doubt`` (its request was cut off by an Immediate close: the
    service may or may not have stored it), or ``pending`` (in memory). So at every snapshot::

        logged == sent + spooled + pending + dropped_backpressure + discarded + in_doubt
                  + rejected + failed + invalid

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
    in_doubt: int = 0

    @property
    def dropped(self) -> int:
        """Points that did not (for sure) reach the service, for any reason."""
        return (self.dropped_backpressure + self.discarded + self.rejected + self.failed
                + self.invalid + self.in_doubt)

    def summary(self) -> str:
        """The counts as one line of text: what ``close()`` prints."""
        text = (
            f"{self.sent:,} of {self.logged:,} points delivered, {self.spooled:,} spooled; "
            f"{self.discarded:,} discarded at close, {self.dropped_backpressure:,} dropped "
            f"(queue full), {self.rejected:,} rejected, {self.failed:,} failed, "
            f"{self.invalid:,} invalid"
        )
        if self.in_doubt:
            text += f", {self.in_doubt:,} in doubt (cut off in flight)"
        return text + f"; {self.requests:,} requests, {self.retries:,} retries"


@attrs.define
class Counters:
    """Mutable counters. Each field has one writer, so no increment is ever lost:

    - the engine's trio thread writes everything but the three ``intake_*``-side fields;
    - callers' threads write ``intake_accepted``, ``intake_discarded`` and
      ``dropped_backpressure``, always under the inbox lock.

    The inbox takes the same lock to drain (pop + ``accepted``) and to snapshot, so a
    snapshot never sees a point both in the queue and in ``accepted``, or in neither.
    """

    accepted: int = 0
    sent: int = 0
    spooled: int = 0
    replayed: int = 0
    discarded: int = 0
    in_doubt: int = 0
    rejected: int = 0
    failed: int = 0
    invalid: int = 0
    requests: int = 0
    retries: int = 0
    errors: int = 0
    intake_accepted: int = 0
    intake_discarded: int = 0
    dropped_backpressure: int = 0

    def settled(self) -> int:
        return (self.sent + self.spooled + self.discarded + self.intake_discarded
                + self.in_doubt + self.rejected + self.failed + self.invalid)

    def total_accepted(self) -> int:
        return self.accepted + self.intake_accepted

    def snapshot(self, queued: int = 0) -> Metrics:
        """``queued``: points still in the inbox, not yet taken by the engine."""
        settled = self.settled()
        accepted = self.total_accepted() + queued
        return Metrics(
            logged=accepted + self.dropped_backpressure,
            sent=self.sent,
            pending=accepted - settled,
            spooled=self.spooled,
            replayed=self.replayed,
            dropped_backpressure=self.dropped_backpressure,
            discarded=self.discarded + self.intake_discarded,
            rejected=self.rejected,
            failed=self.failed,
            invalid=self.invalid,
            requests=self.requests,
            retries=self.retries,
            errors=self.errors,
            in_doubt=self.in_doubt,
        )


def close_advice(final: Metrics, settings: Settings, strategy: CloseStrategy | None,
                 timeout: float, stopped: BaseException | None = None) -> list[str]:
    """For every kind of drop in ``final``: why it happened and which setting keeps it.
    ``stopped``: why the engine stopped taking points (a refused run), if it did."""
    out = []
    if final.discarded:
        if stopped is not None:
            out.append(f"{final.discarded:,} points logged after the run could not be logged "
                       f"to were discarded ({stopped})")
        elif strategy in (CloseStrategy.Immediate, CloseStrategy.CompletePending):
            out.append(f"{final.discarded:,} points were discarded by close_strategy="
                       f"'{strategy.value}'; close_strategy='CompleteAll' (the default) "
                       "delivers them")
        else:
            out.append(f"{final.discarded:,} points were discarded: close_timeout="
                       f"{timeout:g}s ran out with no spool to keep them; a longer "
                       "close_timeout, or a spool_dir, keeps them")
    if final.in_doubt:
        if strategy is CloseStrategy.Immediate:
            out.append(f"{final.in_doubt:,} points were cut off in flight by close_strategy="
                       "'Immediate' (the service may have stored them); close_strategy="
                       "'CompleteAll' waits for their answer")
        else:
            out.append(f"{final.in_doubt:,} points were cut off in flight when close_timeout="
                       f"{timeout:g}s ran out (the service may have stored them); "
                       "a longer close_timeout, or a spool_dir, keeps them")
    if final.dropped_backpressure:
        out.append(f"{final.dropped_backpressure:,} points were dropped because the queue was "
                   f"full (event_queue_max_size={settings.event_queue_max_size:,}); a larger "
                   "event_queue_max_size or backpressure_strategy='Block' keeps them")
    if final.failed:
        where = ("the spool is off (spool_dir)" if settings.spool_dir is None
                 else "the spool was full or unwritable (spool_max_bytes, spool_dir)")
        out.append(f"{final.failed:,} points could be neither delivered nor spooled: {where}")
    return out

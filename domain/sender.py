"""One sender's recent messages: deduplication and the sliding rate limit.

The state is the sender's window, its accepted messages of the last minute;
the caller reads it and the clock under the sender's lock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from domain.commands import ReceiveSms
from domain.decider import Decider, Rejection
from domain.events import SmsReceived

RATE_LIMIT = 5
RATE_WINDOW = timedelta(seconds=60)
DEDUP_WINDOW = timedelta(seconds=2)


class Recent(msgspec.Struct, frozen=True):
    """One message the sender had accepted, as the window remembers it."""

    message_id: UUID
    to: str
    message: str
    received_at: datetime


class SenderWindow(msgspec.Struct, frozen=True):
    """The sender's accepted messages of the last minute, oldest first."""

    recent: tuple[Recent, ...] = ()


class Quota(msgspec.Struct, frozen=True):
    limit: int
    remaining: int
    reset_after: int
    """Whole seconds until the oldest message in the window leaves it."""


class Duplicate(Rejection, frozen=True):
    """The same message was accepted less than `DEDUP_WINDOW` ago: that one stands."""

    original: UUID
    quota: Quota


class OverRateLimit(Rejection, frozen=True):
    quota: Quota

    @property
    def retry_after(self) -> int:
        return self.quota.reset_after


def decide(
    command: ReceiveSms, window: SenderWindow, now: datetime
) -> tuple[SmsReceived] | Duplicate | OverRateLimit:
    live = _live(window.recent, now)
    for recent in reversed(live):
        if (
            now - recent.received_at < DEDUP_WINDOW
            and recent.to == command.to.e164
            and recent.message == command.message
        ):
            return Duplicate(original=recent.message_id, quota=_quota(live, now))
    if len(live) >= RATE_LIMIT:
        return OverRateLimit(quota=_quota(live, now))
    return (
        SmsReceived(
            message_id=command.message_id,
            from_=command.from_.e164,
            to=command.to.e164,
            message=command.message,
            received_at=now,
        ),
    )


def evolve(window: SenderWindow, event: SmsReceived) -> SenderWindow:
    recent = Recent(event.message_id, event.to, event.message, event.received_at)
    return SenderWindow(recent=(*window.recent, recent))


def quota(window: SenderWindow, now: datetime) -> Quota:
    """What the sender has left at `now`."""
    return _quota(_live(window.recent, now), now)


sender_decider: Decider[ReceiveSms, SenderWindow, SmsReceived] = Decider(
    initial=SenderWindow(), decide=decide, evolve=evolve
)


def _live(recent: Iterable[Recent], now: datetime) -> list[Recent]:
    return [r for r in recent if now - r.received_at < RATE_WINDOW]


def _quota(live: list[Recent], now: datetime) -> Quota:
    """The quota after `live`; when it is spent, reset is when the next slot frees."""
    if not live:
        return Quota(RATE_LIMIT, RATE_LIMIT, math.ceil(RATE_WINDOW.total_seconds()))
    times = sorted(r.received_at for r in live)
    remaining = max(RATE_LIMIT - len(times), 0)
    # The slot that frees next is the one that brings the count below the limit.
    freeing = times[len(times) - RATE_LIMIT] if remaining == 0 else times[0]
    seconds = (freeing + RATE_WINDOW - now).total_seconds()
    return Quota(limit=RATE_LIMIT, remaining=remaining, reset_after=max(1, math.ceil(seconds)))

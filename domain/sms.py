"""Decisions about one sender's messages: deduplication and the sliding rate limit.

`decide_receive` is a pure function of the command, the sender's recent window
and the time; the caller reads the window and the clock under the sender's lock.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from uuid import UUID

import msgspec

from domain.commands import ReceiveSms
from domain.events import SmsReceived

RATE_LIMIT = 5
RATE_WINDOW = timedelta(seconds=60)
DEDUP_WINDOW = timedelta(seconds=2)


class Sent(msgspec.Struct, frozen=True):
    """One message the sender had accepted, as the window remembers it."""

    message_id: UUID
    recipient: str
    text: str
    received_at: datetime


class SenderWindow(msgspec.Struct, frozen=True):
    """The sender's accepted messages of the last minute, oldest first."""

    sent: tuple[Sent, ...] = ()


class Quota(msgspec.Struct, frozen=True):
    limit: int
    remaining: int
    reset_after: int
    """Whole seconds until the oldest message in the window leaves it."""


class Accepted(msgspec.Struct, frozen=True):
    event: SmsReceived
    quota: Quota


class Duplicate(msgspec.Struct, frozen=True):
    original: UUID
    quota: Quota


class RateLimited(msgspec.Struct, frozen=True):
    quota: Quota

    @property
    def retry_after(self) -> int:
        return self.quota.reset_after


Decision = Accepted | Duplicate | RateLimited


def decide_receive(command: ReceiveSms, window: SenderWindow, now: datetime) -> Decision:
    live = [s for s in window.sent if now - s.received_at < RATE_WINDOW]
    for sent in reversed(live):
        if (
            now - sent.received_at < DEDUP_WINDOW
            and sent.recipient == command.recipient.e164
            and sent.text == command.text
        ):
            return Duplicate(original=sent.message_id, quota=_quota(live, now))
    if len(live) >= RATE_LIMIT:
        return RateLimited(quota=_quota(live, now))
    event = SmsReceived(
        message_id=command.message_id,
        sender=command.sender.e164,
        recipient=command.recipient.e164,
        text=command.text,
        received_at=now,
    )
    return Accepted(event=event, quota=_quota([*live, _sent(event)], now))


def remember(window: SenderWindow, event: SmsReceived) -> SenderWindow:
    return SenderWindow(sent=(*window.sent, _sent(event)))


def _sent(event: SmsReceived) -> Sent:
    return Sent(event.message_id, event.recipient, event.text, event.received_at)


def _quota(live: list[Sent], now: datetime) -> Quota:
    """The quota after `live`; when it is spent, reset is when the next slot frees."""
    times = sorted(s.received_at for s in live)
    remaining = max(RATE_LIMIT - len(times), 0)
    # The slot that frees next is the one that brings the count below the limit.
    freeing = times[len(times) - RATE_LIMIT] if remaining == 0 else times[0]
    seconds = (freeing + RATE_WINDOW - now).total_seconds()
    return Quota(limit=RATE_LIMIT, remaining=remaining, reset_after=max(1, math.ceil(seconds)))

"""What one API key may do beyond its scopes: its request rate and the numbers it
may send from.

The rate is a token bucket: it holds at most one second's worth of requests
(at least one) and refills continuously at the key's rate; each request takes a
token. The caller keeps the bucket (in memory, per process) and brings the clock.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import ClassVar

import msgspec

from domain.decider import Decider, Rejection
from domain.sender import Quota


class KeyRate(msgspec.Struct, frozen=True):
    per_second: float

    @property
    def capacity(self) -> int:
        """The most requests a key may make at once: one second's worth, at least one."""
        return max(1, math.ceil(self.per_second))

    @staticmethod
    def parse(text: str) -> KeyRate:
        """`N/s`, N a positive number (`20/s`, `0.5/s`)."""
        number, slash, unit = text.strip().partition("/")
        try:
            per_second = float(number)
        except ValueError:
            per_second = math.nan
        if slash != "/" or unit.strip() != "s" or not 0 < per_second < math.inf:
            raise ValueError(f"{text!r} is not a rate: write N/s, N a positive number")
        return KeyRate(per_second)


class Bucket(msgspec.Struct, frozen=True):
    tokens: float
    at: datetime
    """When `tokens` was counted."""


class UseKey(msgspec.Struct, frozen=True):
    rate: KeyRate


class KeyUsed(msgspec.Struct, frozen=True):
    """A request took a token. Not logged: the bucket lives and dies with its process."""

    TYPE: ClassVar[str] = "KeyUsed"

    rate: KeyRate
    at: datetime


class OverKeyRate(Rejection, frozen=True):
    quota: Quota

    @property
    def retry_after(self) -> int:
        return self.quota.reset_after


class SenderNotAllowed(Rejection, frozen=True):
    """The key may send only from the numbers it was made with."""

    sender: str


def _tokens(bucket: Bucket | None, rate: KeyRate, now: datetime) -> float:
    if bucket is None:
        return float(rate.capacity)
    # A clock that stepped back refills nothing rather than emptying the bucket.
    elapsed = max((now - bucket.at).total_seconds(), 0.0)
    return min(float(rate.capacity), bucket.tokens + elapsed * rate.per_second)


def quota(bucket: Bucket | None, rate: KeyRate, now: datetime) -> Quota:
    """What the key has left at `now`; reset is when the bucket is full again."""
    tokens = _tokens(bucket, rate, now)
    missing = rate.capacity - tokens
    return Quota(
        limit=rate.capacity,
        remaining=math.floor(tokens),
        reset_after=math.ceil(missing / rate.per_second) if missing > 0 else 0,
    )


def decide(
    command: UseKey, bucket: Bucket | None, now: datetime
) -> Sequence[KeyUsed] | OverKeyRate:
    tokens = _tokens(bucket, command.rate, now)
    if tokens >= 1:
        return [KeyUsed(command.rate, now)]
    wait = math.ceil((1 - tokens) / command.rate.per_second)
    left = quota(bucket, command.rate, now)
    return OverKeyRate(Quota(left.limit, 0, max(1, wait)))


def evolve(bucket: Bucket | None, event: KeyUsed) -> Bucket | None:
    return Bucket(_tokens(bucket, event.rate, event.at) - 1, event.at)


key_rate_decider: Decider[UseKey, Bucket | None, KeyUsed] = Decider(
    initial=None, decide=decide, evolve=evolve
)


def check_sender(senders: Collection[str], sender: str) -> SenderNotAllowed | None:
    """A key made with `senders` sends from those numbers only; one made without, from any."""
    if senders and sender not in senders:
        return SenderNotAllowed(sender)
    return None


def tighter(first: Quota, second: Quota) -> Quota:
    """The quota that stops a client first: the fewer requests left, then the later reset."""
    return min(first, second, key=lambda q: (q.remaining, -q.reset_after))

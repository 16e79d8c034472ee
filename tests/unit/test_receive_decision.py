"""Given the sender's recent messages, when ReceiveSms, then a new message, a
duplicate, or over the rate limit."""

from datetime import UTC, datetime, timedelta

from uuid_utils.compat import uuid7

from domain.commands import ReceiveSms
from domain.events import SmsReceived
from domain.sender import Duplicate, OverRateLimit, quota, sender_decider
from tests.support.deciders import Given, given

T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
FROM, TO = "+14155550100", "+447911123456"


def sms(message: str = "Hello", to: str = TO) -> ReceiveSms:
    return ReceiveSms.create(uuid7(), FROM, to, message)


def received(seconds: float, message: str) -> SmsReceived:
    """A message the sender had accepted `seconds` after T0."""
    return SmsReceived(
        message_id=uuid7(), from_=FROM, to=TO, message=message, received_at=at(seconds)
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def sent(*history: tuple[float, str]) -> Given[ReceiveSms, object, SmsReceived]:
    return given(sender_decider, *(received(s, m) for s, m in history))


def five_by(*seconds: float) -> Given[ReceiveSms, object, SmsReceived]:
    return sent(*((s, f"m{s}") for s in seconds))


def test_the_first_message_is_received_at_now() -> None:
    command = sms()
    when = given(sender_decider).when(command, T0)
    when.then(
        SmsReceived(
            message_id=command.message_id, from_=FROM, to=TO, message="Hello", received_at=T0
        )
    )
    left = quota(when.state, T0)
    assert (left.remaining, left.reset_after) == (4, 60)


def test_same_to_and_message_within_two_seconds_is_the_earlier_message() -> None:
    history = sent((0, "Hello"))
    duplicate = history.when(sms("Hello"), at(1.999)).then_rejected(Duplicate)
    assert duplicate.original == history.events[0].message_id


def test_exactly_two_seconds_later_is_a_new_message() -> None:
    assert len(sent((0, "Hello")).when(sms("Hello"), at(2)).events) == 1


def test_a_different_message_or_to_is_not_a_duplicate() -> None:
    history = sent((0, "Hello"))
    assert len(history.when(sms("Hello!"), at(0.5)).events) == 1
    assert len(history.when(sms("Hello", "+33612345678"), at(0.5)).events) == 1


def test_a_duplicate_names_the_latest_matching_message() -> None:
    history = sent((0, "Hello"), (2.5, "Hello"))
    duplicate = history.when(sms("Hello"), at(3)).then_rejected(Duplicate)
    assert duplicate.original == history.events[1].message_id


def test_the_sixth_message_in_a_minute_is_limited_until_the_oldest_leaves() -> None:
    limited = five_by(0, 10, 20, 30, 40).when(sms("m50"), at(50)).then_rejected(OverRateLimit)
    assert limited.retry_after == 10
    assert (limited.quota.limit, limited.quota.remaining) == (5, 0)


def test_retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() -> None:
    burst = five_by(0, 1, 2, 3, 4)
    assert burst.when(sms("x"), at(58.5)).then_rejected(OverRateLimit).retry_after == 2
    assert burst.when(sms("x"), at(59.9999)).then_rejected(OverRateLimit).retry_after == 1


def test_exactly_sixty_seconds_after_the_oldest_a_slot_is_free() -> None:
    history = five_by(0, 10, 20, 30, 40)
    history.when(sms("x"), at(59.999)).then_rejected(OverRateLimit)
    when = history.when(sms("x"), at(60))
    assert len(when.events) == 1
    left = quota(when.state, at(60))
    assert (left.remaining, left.reset_after) == (0, 10)


def test_a_duplicate_is_answered_even_when_the_sender_is_limited() -> None:
    five_by(0, 0.1, 0.2, 0.3, 0.4).when(sms("m0.4"), at(1)).then_rejected(Duplicate)


def test_each_accepted_message_counts_so_a_burst_is_limited_to_five() -> None:
    history = given(sender_decider)
    outcomes = []
    for i in range(8):
        when = history.when(sms(f"burst {i}"), at(i * 0.01))
        if isinstance(when.decision, OverRateLimit):
            outcomes.append("limited")
            continue
        outcomes.append("new")
        history = given(sender_decider, *history.events, *when.events)
    assert outcomes == ["new"] * 5 + ["limited"] * 3


def test_messages_older_than_the_window_do_not_count() -> None:
    when = five_by(0, 1, 2, 3, 4).when(sms("late"), at(600))
    assert len(when.events) == 1
    assert quota(when.state, at(600)).remaining == 4

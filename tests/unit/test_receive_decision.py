"""Given the sender's window, when ReceiveSms, then accept, call it a duplicate, or limit."""

from datetime import UTC, datetime, timedelta

from uuid_utils.compat import uuid7

from domain.commands import ReceiveSms
from domain.events import SmsReceived
from domain.sms import (
    Accepted,
    Duplicate,
    RateLimited,
    SenderWindow,
    decide_receive,
    remember,
)

T0 = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
SENDER, RECIPIENT = "+14155550100", "+447911123456"


def sms(text: str = "Hello", recipient: str = RECIPIENT) -> ReceiveSms:
    return ReceiveSms.create(uuid7(), SENDER, recipient, text)


def history(*sent: tuple[float, str]) -> SenderWindow:
    """A window with messages accepted `seconds` after T0, each with its text."""
    window = SenderWindow()
    for seconds, text in sent:
        window = remember(window, received(text, T0 + timedelta(seconds=seconds)))
    return window


def received(text: str, at: datetime) -> SmsReceived:
    return SmsReceived(
        message_id=uuid7(), sender=SENDER, recipient=RECIPIENT, text=text, received_at=at
    )


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_first_message_is_accepted_as_received_at_now() -> None:
    command = sms()
    decision = decide_receive(command, SenderWindow(), T0)
    assert isinstance(decision, Accepted)
    assert decision.event == SmsReceived(
        message_id=command.message_id,
        sender=SENDER,
        recipient=RECIPIENT,
        text="Hello",
        received_at=T0,
    )
    assert (decision.quota.remaining, decision.quota.reset_after) == (4, 60)


def test_same_recipient_and_text_within_two_seconds_is_the_earlier_message() -> None:
    window = history((0, "Hello"))
    decision = decide_receive(sms("Hello"), window, at(1.999))
    assert isinstance(decision, Duplicate)
    assert decision.original == window.sent[0].message_id


def test_exactly_two_seconds_later_is_a_new_message() -> None:
    assert isinstance(decide_receive(sms("Hello"), history((0, "Hello")), at(2)), Accepted)


def test_a_different_text_or_recipient_is_not_a_duplicate() -> None:
    window = history((0, "Hello"))
    assert isinstance(decide_receive(sms("Hello!"), window, at(0.5)), Accepted)
    assert isinstance(decide_receive(sms("Hello", "+33612345678"), window, at(0.5)), Accepted)


def test_a_duplicate_names_the_latest_matching_message() -> None:
    window = history((0, "Hello"), (2.5, "Hello"))
    decision = decide_receive(sms("Hello"), window, at(3))
    assert isinstance(decision, Duplicate)
    assert decision.original == window.sent[1].message_id


def test_the_sixth_message_in_a_minute_is_limited_until_the_oldest_leaves() -> None:
    window = history(*((s, f"m{s}") for s in (0, 10, 20, 30, 40)))
    decision = decide_receive(sms("m50"), window, at(50))
    assert isinstance(decision, RateLimited)
    assert decision.retry_after == 10
    assert (decision.quota.limit, decision.quota.remaining) == (5, 0)


def test_retry_after_rounds_up_to_whole_seconds_and_is_at_least_one() -> None:
    window = history(*((s, f"m{s}") for s in (0, 1, 2, 3, 4)))
    assert decide_receive(sms("x"), window, at(58.5)).quota.reset_after == 2
    assert decide_receive(sms("x"), window, at(59.9999)).quota.reset_after == 1


def test_exactly_sixty_seconds_after_the_oldest_a_slot_is_free() -> None:
    window = history(*((s, f"m{s}") for s in (0, 10, 20, 30, 40)))
    assert isinstance(decide_receive(sms("x"), window, at(59.999)), RateLimited)
    decision = decide_receive(sms("x"), window, at(60))
    assert isinstance(decision, Accepted)
    assert decision.quota.remaining == 0
    assert decision.quota.reset_after == 10


def test_a_duplicate_is_answered_even_when_the_sender_is_limited() -> None:
    window = history(*((s / 10, f"m{s}") for s in range(5)))
    assert isinstance(decide_receive(sms("m4"), window, at(1)), Duplicate)


def test_remembering_each_accepted_message_limits_a_burst_to_five() -> None:
    window, outcomes = SenderWindow(), []
    for i in range(8):
        decision = decide_receive(sms(f"burst {i}"), window, at(i * 0.01))
        outcomes.append(type(decision).__name__)
        if isinstance(decision, Accepted):
            window = remember(window, decision.event)
    assert outcomes == ["Accepted"] * 5 + ["RateLimited"] * 3


def test_messages_older_than_the_window_do_not_count() -> None:
    window = history(*((s, f"m{s}") for s in (0, 1, 2, 3, 4)))
    decision = decide_receive(sms("late"), window, at(600))
    assert isinstance(decision, Accepted)
    assert decision.quota.remaining == 4

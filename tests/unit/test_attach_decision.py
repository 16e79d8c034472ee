"""AttachMedia: given a message's events, when images are attached, then which events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from domain.commands import AttachMedia, Image
from domain.errors import UnknownMessage
from domain.events import MediaAttached, SmsProcessed, SmsReceived
from domain.media import decide_attach
from domain.message import MessageState, fold

T0 = datetime(2026, 11, 24, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def image(n: int) -> Image:
    return Image(
        sha256=f"{n:064x}", content_type="image/png", size=100 + n, width=n + 1, height=n + 2
    )


def received() -> SmsReceived:
    return SmsReceived(
        message_id=uuid7(),
        sender="+14155550100",
        recipient="+447911123456",
        text="Hello",
        received_at=T0,
    )


def state_after(*events: SmsReceived | SmsProcessed | MediaAttached) -> MessageState:
    state = fold(events)
    assert state is not None
    return state


def attach(state: MessageState, *numbers: int) -> AttachMedia:
    return AttachMedia(message_id=state.message_id, images=tuple(image(n) for n in numbers))


def test_new_images_become_events_with_their_facts_and_the_time() -> None:
    state = state_after(received())
    decision = decide_attach(attach(state, 1, 2), state, LATER)
    assert decision.new == decision.media
    assert [e.sha256 for e in decision.new] == [image(1).sha256, image(2).sha256]
    first = decision.new[0]
    assert first == MediaAttached(
        message_id=state.message_id,
        sha256=image(1).sha256,
        content_type="image/png",
        size=101,
        width=2,
        height=3,
        attached_at=LATER,
    )


def test_images_the_message_has_already_are_answered_not_attached_again() -> None:
    start = received()
    earlier = decide_attach(attach(state_after(start), 1), state_after(start), T0).new[0]
    state = state_after(start, earlier)

    again = decide_attach(attach(state, 1), state, LATER)
    assert again.new == ()
    assert again.media == (earlier,)  # with its first attach time

    mixed = decide_attach(attach(state, 2, 1), state, LATER)
    assert [e.sha256 for e in mixed.new] == [image(2).sha256]
    assert [e.sha256 for e in mixed.media] == [image(2).sha256, image(1).sha256]


def test_a_repeat_within_one_command_is_one_event() -> None:
    state = state_after(received())
    decision = decide_attach(attach(state, 3, 3, 4, 3), state, LATER)
    assert [e.sha256 for e in decision.new] == [image(3).sha256, image(4).sha256]


def test_processing_does_not_change_what_is_new() -> None:
    start = received()
    state = state_after(start)
    processed = SmsProcessed(
        message_id=start.message_id,
        encoding="GSM-7",
        segments=1,
        from_region="US",
        to_region="GB",
        processed_at=T0,
    )
    assert decide_attach(attach(state, 5), state_after(start, processed), LATER).new != ()


def test_an_unknown_message_is_refused() -> None:
    command = AttachMedia(message_id=uuid7(), images=(image(1),))
    with pytest.raises(UnknownMessage):
        decide_attach(command, None, LATER)


@given(st.lists(st.integers(0, 6), max_size=8), st.lists(st.integers(0, 6), min_size=1, max_size=8))
def test_attached_images_are_each_attached_once_in_first_seen_order(
    before: list[int], now: list[int]
) -> None:
    start = received()
    state = state_after(start)
    if before:
        state = state_after(start, *decide_attach(attach(state, *before), state, T0).new)
    decision = decide_attach(attach(state, *now), state, LATER)

    already = {m.sha256 for m in state.media}
    wanted = list(dict.fromkeys(image(n).sha256 for n in now))
    assert [m.sha256 for m in decision.media] == wanted
    assert [e.sha256 for e in decision.new] == [s for s in wanted if s not in already]
    assert all(e.attached_at == LATER for e in decision.new)

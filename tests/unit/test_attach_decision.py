"""Given a message's events, when images are attached, then which MediaAttached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given as for_all
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from domain.commands import AttachMedia, Image
from domain.events import MediaAttached, SmsProcessed, SmsReceived
from domain.message import UnknownMessage, attached, message_decider
from tests.support.deciders import given

T0 = datetime(2026, 11, 24, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
RECEIVED = SmsReceived(
    message_id=uuid7(), from_="+14155550100", to="+447911123456", message="Hello", received_at=T0
)
PROCESSED = SmsProcessed(
    message_id=RECEIVED.message_id,
    encoding="GSM-7",
    segments=1,
    from_region="US",
    to_region="GB",
    processed_at=T0,
)


def image(n: int) -> Image:
    return Image(
        sha256=f"{n:064x}",
        content_type="image/png",
        format="PNG",
        size=100 + n,
        width=n + 1,
        height=n + 2,
    )


def attach(*numbers: int) -> AttachMedia:
    return AttachMedia(message_id=RECEIVED.message_id, images=tuple(image(n) for n in numbers))


def media(n: int, at: datetime) -> MediaAttached:
    return MediaAttached(
        message_id=RECEIVED.message_id,
        sha256=image(n).sha256,
        content_type="image/png",
        format="PNG",
        size=100 + n,
        width=n + 1,
        height=n + 2,
        attached_at=at,
    )


def test_new_images_become_events_with_their_facts_and_the_time() -> None:
    given(message_decider, RECEIVED).when(attach(1, 2), LATER).then(
        media(1, LATER), media(2, LATER)
    )


def test_images_the_message_has_already_attach_nothing_and_keep_their_first_time() -> None:
    history = given(message_decider, RECEIVED, media(1, T0))
    again = history.when(attach(1), LATER).then()
    assert again.state is not None
    assert attached(attach(1), again.state) == (media(1, T0),)

    mixed = history.when(attach(2, 1), LATER).then(media(2, LATER))
    assert mixed.state is not None
    assert attached(attach(2, 1), mixed.state) == (media(2, LATER), media(1, T0))


def test_a_repeat_within_one_command_is_one_event() -> None:
    given(message_decider, RECEIVED).when(attach(3, 3, 4, 3), LATER).then(
        media(3, LATER), media(4, LATER)
    )


def test_a_processed_message_takes_images_too() -> None:
    given(message_decider, RECEIVED, PROCESSED).when(attach(5), LATER).then(media(5, LATER))


def test_an_unknown_message_is_rejected() -> None:
    command = AttachMedia(message_id=uuid7(), images=(image(1),))
    rejected = given(message_decider).when(command, LATER).then_rejected(UnknownMessage)
    assert rejected.message_id == command.message_id


@for_all(
    st.lists(st.integers(0, 6), max_size=8), st.lists(st.integers(0, 6), min_size=1, max_size=8)
)
def test_attached_images_are_each_attached_once_in_first_seen_order(
    before: list[int], now: list[int]
) -> None:
    earlier = [media(n, T0) for n in dict.fromkeys(before)]
    when = given(message_decider, RECEIVED, *earlier).when(attach(*now), LATER)

    already = {m.sha256 for m in earlier}
    wanted = list(dict.fromkeys(image(n).sha256 for n in now))
    assert when.state is not None
    assert [m.sha256 for m in attached(attach(*now), when.state)] == wanted
    assert [e.sha256 for e in when.events] == [s for s in wanted if s not in already]
    assert all(isinstance(e, MediaAttached) and e.attached_at == LATER for e in when.events)

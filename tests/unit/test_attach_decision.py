"""Given a message's events, when images are attached, then which MediaAttached."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given as for_all
from hypothesis import strategies as st
from uuid_utils.compat import uuid7

from domain.commands import AttachMedia, Image
from domain.events import MediaAttached, SmsProcessed, SmsReceived
from domain.message import TooManyImages, UnknownMessage, attached, message_decider
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


def attach(*numbers: int, max_media: int = 10) -> AttachMedia:
    return AttachMedia(
        message_id=RECEIVED.message_id,
        images=tuple(image(n) for n in numbers),
        max_media=max_media,
    )


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


def test_the_tenth_image_is_attached_and_the_eleventh_refused() -> None:
    nine = given(message_decider, RECEIVED, *(media(n, T0) for n in range(9)))
    tenth = nine.when(attach(9), LATER).then(media(9, LATER))
    full = given(message_decider, RECEIVED, *tenth.given.events, *tenth.events)
    refused = full.when(attach(10), LATER).then_rejected(TooManyImages)
    assert refused == TooManyImages(RECEIVED.message_id, attached=10, adding=1, limit=10)


def test_images_that_would_pass_the_limit_together_are_all_refused() -> None:
    # 9 attached, 3 new: not 1 of them kept and 2 refused, but none.
    nine = given(message_decider, RECEIVED, *(media(n, T0) for n in range(9)))
    refused = nine.when(attach(20, 21, 22), LATER).then_rejected(TooManyImages)
    assert (refused.attached, refused.adding, refused.limit) == (9, 3, 10)
    nine.when(attach(20), LATER).then(media(20, LATER))


def test_images_a_full_message_has_already_are_not_refused() -> None:
    # They add nothing, so they pass nothing: the same upload again answers as before.
    full = given(message_decider, RECEIVED, *(media(n, T0) for n in range(10)))
    full.when(attach(0, 9, 0), LATER).then()
    # One new image among known ones counts as one.
    full.when(attach(0, 30), LATER).then_rejected(TooManyImages)


def test_the_limit_is_the_commands() -> None:
    given(message_decider, RECEIVED).when(attach(1, 2, 3, max_media=2), LATER).then_rejected(
        TooManyImages
    )
    given(message_decider, RECEIVED).when(attach(1, 2, max_media=2), LATER).then(
        media(1, LATER), media(2, LATER)
    )


@for_all(st.integers(0, 12), st.lists(st.integers(0, 30), min_size=1, max_size=12))
def test_a_message_never_passes_its_limit(before: int, now: list[int]) -> None:
    earlier = [media(n, T0) for n in range(before)]
    decision = given(message_decider, RECEIVED, *earlier).when(attach(*now), LATER).decision
    new = {image(n).sha256 for n in now} - {m.sha256 for m in earlier}
    if new and before + len(new) > 10:
        assert decision == TooManyImages(RECEIVED.message_id, before, len(new), 10)
    else:
        assert not isinstance(decision, TooManyImages)
        assert len(decision) == len(new)


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

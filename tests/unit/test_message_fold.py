from datetime import UTC, datetime

import pytest
from uuid_utils.compat import uuid7

from domain.events import MediaAttached, SmsProcessed, SmsReceived
from domain.message import BrokenStream, Status, evolve, fold

NOW = datetime(2026, 11, 24, tzinfo=UTC)
ID = uuid7()
RECEIVED = SmsReceived(
    message_id=ID, from_="+14155550100", to="+447911123456", message="Hi", received_at=NOW
)
PROCESSED = SmsProcessed(
    message_id=ID, encoding="GSM-7", segments=1, from_region="US", to_region="GB", processed_at=NOW
)
MEDIA = MediaAttached(
    message_id=ID,
    sha256="ab" * 32,
    content_type="image/png",
    format="PNG",
    size=10,
    width=1,
    height=1,
    attached_at=NOW,
)


def test_an_empty_stream_is_no_message() -> None:
    assert fold([]) is None


def test_a_received_message_is_at_version_one() -> None:
    state = fold([RECEIVED])
    assert state is not None
    assert (state.status, state.version, state.message) == (Status.RECEIVED, 1, "Hi")


def test_processing_and_media_advance_the_version() -> None:
    state = fold([RECEIVED, MEDIA, PROCESSED])
    assert state is not None
    assert (state.status, state.version, state.media, state.processed) == (
        Status.PROCESSED,
        3,
        (MEDIA,),
        PROCESSED,
    )


def test_an_event_before_sms_received_is_a_broken_stream() -> None:
    with pytest.raises(BrokenStream, match="before SmsReceived"):
        evolve(None, PROCESSED)

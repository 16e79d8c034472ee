from datetime import UTC, datetime, timedelta

import pytest
from uuid_utils.compat import uuid7

from domain.commands import ProcessSms
from domain.encoding import segment
from domain.events import SmsProcessed, SmsReceived
from domain.message import UnknownMessage, message_decider
from tests.support.deciders import given

T0 = datetime(2026, 11, 24, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "encoding", "segments", "units"),
    [
        ("Hello", "GSM-7", 1, 5),
        ("x" * 160, "GSM-7", 1, 160),
        ("x" * 161, "GSM-7", 2, 161),
        ("x" * 306, "GSM-7", 2, 306),
        ("x" * 307, "GSM-7", 3, 307),
        ("€" * 80, "GSM-7", 1, 160),  # extension characters cost two septets
        ("€" * 81, "GSM-7", 2, 162),
        ("x" * 151 + "€" + "x" * 153, "GSM-7", 2, 306),
        ("x" * 152 + "€" + "x" * 152, "GSM-7", 3, 306),  # the escape pair is never split
        ("Ça coûte 5€", "UCS-2", 1, 11),  # û is not in GSM 03.38
        ("日" * 70, "UCS-2", 1, 70),
        ("日" * 71, "UCS-2", 2, 71),
        ("👍" * 35, "UCS-2", 1, 70),  # a surrogate pair is two code units
        ("👍" * 36, "UCS-2", 2, 72),
        ("a" * 65 + "👍" + "a" * 67, "UCS-2", 2, 134),
        ("a" * 66 + "👍" + "a" * 66, "UCS-2", 3, 134),  # the pair moves whole to the next part
        ("👍" * 160, "UCS-2", 5, 320),
    ],
)
def test_segments_are_counted_the_way_carriers_count_them(
    text: str, encoding: str, segments: int, units: int
) -> None:
    counted = segment(text)
    assert (counted.encoding, counted.segments, counted.units) == (encoding, segments, units)


def received(text: str = "Hello") -> SmsReceived:
    return SmsReceived(
        message_id=uuid7(),
        from_="+14155550100",
        to="+447911123456",
        message=text,
        received_at=T0,
    )


def test_a_received_message_is_processed_with_its_encoding_and_regions() -> None:
    event = received("Hi €")
    then = T0 + timedelta(milliseconds=40)
    given(message_decider, event).when(ProcessSms(message_id=event.message_id), then).then(
        SmsProcessed(
            message_id=event.message_id,
            encoding="GSM-7",
            segments=1,
            from_region="US",
            to_region="GG",
            processed_at=then,
        )
    )


def test_a_processed_message_is_not_processed_again() -> None:
    event = received()
    process = ProcessSms(message_id=event.message_id)
    (processed,) = given(message_decider, event).when(process, T0).events
    given(message_decider, event, processed).when(process, T0).then()


def test_an_unknown_message_is_not_processed() -> None:
    given(message_decider).when(ProcessSms(message_id=uuid7()), T0).then_rejected(UnknownMessage)

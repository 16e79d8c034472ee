"""Reading events of every version the log may hold as the current one."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from uuid_utils.compat import uuid7

from domain.events import EVENT_TYPES, Event, SmsProcessed, SmsReceived
from domain.upcasting import STEPS, UnknownEventVersion, decode, upcast

AT = datetime(2026, 11, 24, 10, 15, 2, 123000, tzinfo=UTC)
RECEIVED = SmsReceived(
    message_id=uuid7(), from_="+447700900123", to="+447911123456", message="Hello", received_at=AT
)
PROCESSED = SmsProcessed(
    message_id=RECEIVED.message_id,
    encoding="GSM-7",
    segments=1,
    from_region="GB",
    to_region="GB",
    processed_at=AT,
)


@pytest.mark.parametrize("event", [RECEIVED, PROCESSED], ids=lambda e: e.TYPE)
def test_the_current_version_reads_as_it_was_written(event: Event) -> None:
    assert decode(event.TYPE, event.SCHEMA_VERSION, msgspec.json.encode(event)) == event


@pytest.mark.parametrize("kind", EVENT_TYPES.values(), ids=lambda k: k.TYPE)
def test_a_version_newer_than_the_code_is_refused_by_name(kind: type[Event]) -> None:
    newer = kind.SCHEMA_VERSION + 1
    with pytest.raises(UnknownEventVersion, match=f"cannot read {kind.TYPE} version {newer}"):
        decode(kind.TYPE, newer, b"{}")
    with pytest.raises(UnknownEventVersion):
        upcast(kind.TYPE, newer, {})


@pytest.mark.parametrize("version", [0, -1])
def test_a_version_below_the_first_is_refused(version: int) -> None:
    with pytest.raises(UnknownEventVersion, match=f"version {version}"):
        decode(SmsReceived.TYPE, version, msgspec.json.encode(RECEIVED))


def test_an_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(UnknownEventVersion, match="SmsLost version 1: an unknown event type"):
        decode("SmsLost", 1, b"{}")


@pytest.mark.parametrize("kind", EVENT_TYPES.values(), ids=lambda k: k.TYPE)
def test_every_older_version_has_one_step_to_the_next(kind: type[Event]) -> None:
    versions = sorted(v for t, v in STEPS if t == kind.TYPE)
    assert versions == list(range(1, kind.SCHEMA_VERSION))


def test_every_step_is_of_a_known_type() -> None:
    assert {t for t, _ in STEPS} <= set(EVENT_TYPES)

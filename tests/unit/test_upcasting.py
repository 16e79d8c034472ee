"""Reading events of every version the log may hold as the current one."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from PIL import Image as Pillow
from uuid_utils.compat import uuid7

from domain.access import ApiKeyCreated
from domain.events import (
    EVENT_TYPES,
    LOGGED_TYPES,
    AnyEvent,
    Event,
    MediaAttached,
    SmsProcessed,
    SmsReceived,
)
from domain.upcasting import FORMAT_OF, STEPS, UnknownEventVersion, decode, upcast
from media.probe import CONTENT_TYPES
from tests.support.versions import as_version_1

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

MEDIA = MediaAttached(
    message_id=RECEIVED.message_id,
    sha256="ab" * 32,
    content_type="image/gif",
    format="GIF",
    size=1234,
    width=64,
    height=48,
    attached_at=AT,
)


@pytest.mark.parametrize("event", [RECEIVED, PROCESSED, MEDIA], ids=lambda e: e.TYPE)
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


@pytest.mark.parametrize("kind", LOGGED_TYPES.values(), ids=lambda k: k.TYPE)
def test_every_older_version_has_one_step_to_the_next(kind: type[AnyEvent]) -> None:
    versions = sorted(v for t, v in STEPS if t == kind.TYPE)
    assert versions == list(range(1, kind.SCHEMA_VERSION))


def test_every_step_is_of_a_known_type() -> None:
    assert {t for t, _ in STEPS} <= set(LOGGED_TYPES)


def test_a_version_1_key_reads_as_one_with_no_limits_of_its_own() -> None:
    stored = {
        "key_id": "abcdefabcdef",
        "name": "ci",
        "scopes": ["read", "write"],
        "actor": "operator:alice",
        "created_at": "2026-11-24T10:15:02.123Z",
    }
    assert decode(ApiKeyCreated.TYPE, 1, msgspec.json.encode(stored)) == ApiKeyCreated(
        key_id="abcdefabcdef",
        name="ci",
        scopes=("read", "write"),
        rate_per_second=None,
        senders=(),
        actor="operator:alice",
        created_at=AT,
    )


@pytest.mark.parametrize(("content_type", "image_format"), sorted(FORMAT_OF.items()))
def test_a_version_1_image_reads_with_the_format_its_content_type_names(
    content_type: str, image_format: str
) -> None:
    event = msgspec.structs.replace(MEDIA, content_type=content_type, format=image_format)
    stored = msgspec.json.encode(as_version_1(event))
    assert b"format" not in stored
    assert decode(MediaAttached.TYPE, 1, stored) == event


def test_a_version_2_image_keeps_the_format_pillow_gave_it() -> None:
    several = msgspec.structs.replace(MEDIA, content_type="image/jpeg", format="MPO")
    assert decode(MediaAttached.TYPE, 2, msgspec.json.encode(several)) == several
    # Version 1 recorded only image/jpeg for it: the log cannot tell it apart.
    assert decode(MediaAttached.TYPE, 1, msgspec.json.encode(as_version_1(several))).format == (
        "JPEG"
    )


def test_the_formats_are_pillows_names_for_every_content_type_ever_stored() -> None:
    Pillow.init()
    assert set(FORMAT_OF) == set(CONTENT_TYPES.values())
    assert {Pillow.MIME[name] for name in FORMAT_OF.values()} == set(FORMAT_OF)
    assert all(Pillow.MIME[name] == content_type for content_type, name in FORMAT_OF.items())


def test_a_version_1_image_with_no_format_for_its_content_type_is_refused() -> None:
    stored = {**as_version_1(MEDIA), "content_type": "image/bmp"}
    with pytest.raises(ValueError, match="image/bmp"):
        upcast(MediaAttached.TYPE, 1, stored)


def test_upcasting_leaves_the_stored_data_as_it_was() -> None:
    stored = as_version_1(MEDIA)
    before = dict(stored)
    assert upcast(MediaAttached.TYPE, 1, stored)["format"] == "GIF"
    assert stored == before


def test_a_missing_step_is_refused_not_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(STEPS, (MediaAttached.TYPE, 1))
    with pytest.raises(UnknownEventVersion, match="cannot read MediaAttached version 1"):
        decode(MediaAttached.TYPE, 1, msgspec.json.encode(as_version_1(MEDIA)))

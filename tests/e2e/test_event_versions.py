"""One log holding version 1 and version 2 of MediaAttached, read by everything
that reads the log: the single-message reads folded from the stream, the
processing stage, the live projectors, replay, and the audit reads, which
show each event as it was stored."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import msgspec
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from domain.events import MediaAttached, SmsReceived, stream_of
from projections.catalog import read_models
from projections.log import LogEntry, read_after
from projections.processing import ProcessingStage
from projections.replay import replay
from projections.runner import catch_up
from tests.support import images
from tests.support.media import part, upload
from tests.support.phones import random_phone
from tests.support.versions import as_version_1, as_written, write_stored

AT = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def old_image(message_id: UUID, seed: str, content_type: str, image_format: str) -> MediaAttached:
    return MediaAttached(
        message_id=message_id,
        sha256=hashlib.sha256(seed.encode()).hexdigest(),
        content_type=content_type,
        format=image_format,
        size=321,
        width=20,
        height=10,
        attached_at=AT,
    )


async def old_message(pool: AsyncConnectionPool, *versions_1: MediaAttached) -> UUID:
    """A message and its images as an older version of the service wrote them."""
    message_id = versions_1[0].message_id
    received = SmsReceived(
        message_id=message_id,
        from_=random_phone(),
        to="+447911123456",
        message="Sent before version 2",
        received_at=AT,
    )
    async with pool.connection() as conn:
        stream = stream_of(message_id)
        await write_stored(conn, stream, 1, SmsReceived.TYPE, 1, as_written(received))
        for version, image in enumerate(versions_1, start=2):
            await write_stored(conn, stream, version, MediaAttached.TYPE, 1, as_version_1(image))
    return message_id


async def read_models_as_rows(pool: AsyncConnectionPool, ids: list[UUID]) -> dict[str, Any]:
    async with pool.connection() as conn:
        found = {}
        for name, query in {
            "messages": "SELECT * FROM sms_messages WHERE id = ANY(%s) ORDER BY id",
            "links": "SELECT * FROM message_media WHERE message_id = ANY(%s)"
            " ORDER BY message_id, stream_version",
            "blobs": "SELECT b.sha256, b.format, b.content_type, b.size, b.width, b.height"
            " FROM media_blobs b JOIN message_media m USING (sha256)"
            " WHERE m.message_id = ANY(%s) ORDER BY sha256",
        }.items():
            cur = await conn.execute(query, (ids,))
            found[name] = await cur.fetchall()
        cur = await conn.execute("SELECT * FROM message_counters")
        found["counters"] = await cur.fetchall()
    return found


async def test_version_1_and_version_2_events_read_as_one_log(
    still: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    # Older: a message with a GIF and a JPEG, whose events know no format.
    older = uuid7()
    gif = old_image(older, "old gif", "image/gif", "GIF")
    jpeg = old_image(older, "old jpeg", "image/jpeg", "JPEG")
    await old_message(pool, gif, jpeg)
    # Mixed: an older message and image, then an image attached by this version.
    mixed = uuid7()
    webp = old_image(mixed, "old webp", "image/webp", "WEBP")
    await old_message(pool, webp)
    new_png = images.png(seed=42)
    answer = await upload(still, str(mixed), part(new_png))
    assert answer.status_code == 201, answer.text
    assert [i["sha256"] for i in answer.json()["items"]] == [hashlib.sha256(new_png).hexdigest()]

    # The audit reads show each event as stored, with its version.
    audit = (await still.get(f"/messages/{mixed}/events")).json()["items"]
    assert [(e["type"], e["schema_version"]) for e in audit] == [
        ("SmsReceived", 1),
        ("MediaAttached", 1),
        ("MediaAttached", 2),
    ]
    assert "format" not in audit[1]["data"]
    assert audit[1]["data"] == msgspec.to_builtins(as_version_1(webp))
    assert audit[2]["data"]["format"] == "PNG"
    everything = (await still.get("/events", params={"limit": 1000})).json()["items"]
    attached = {
        e["data"]["sha256"]: (e["schema_version"], e["data"].get("format"))
        for e in everything
        if e["type"] == "MediaAttached"
    }
    assert attached[gif.sha256] == attached[jpeg.sha256] == attached[webp.sha256] == (1, None)
    assert attached[hashlib.sha256(new_png).hexdigest()] == (2, "PNG")
    async with pool.connection() as conn:
        printed = [
            LogEntry.recorded(r)
            for r in await read_after(conn, 0, 1000, stream_id=stream_of(older))
        ]
    assert [(e.schema_version, "format" in e.data) for e in printed] == [
        (1, False),
        (1, False),
        (1, False),
    ]

    # Folded from the stream (no projector has run): both versions count.
    for message_id, count in ((older, 2), (mixed, 2)):
        message = (await still.get(f"/messages/{message_id}")).json()
        assert (message["status"], message["media_count"]) == ("received", count)
    media = (await still.get(f"/messages/{mixed}/media")).json()["items"]
    assert [m["content_type"] for m in media] == ["image/webp", "image/png"]

    # The processing stage folds both streams and processes both messages.
    async with pool.connection() as conn:
        assert await catch_up(conn, ProcessingStage()) >= 2
    for message_id in (older, mixed):
        events = (await still.get(f"/messages/{message_id}/events")).json()["items"]
        assert events[-1]["type"] == "SmsProcessed"

    # The live projectors fold v1 and v2 alike; the read model has each format.
    async with pool.connection() as conn:
        for model in read_models().values():
            await catch_up(conn, model)
    for message_id, count in ((older, 2), (mixed, 2)):
        message = (await still.get(f"/messages/{message_id}")).json()
        assert (message["status"], message["media_count"]) == ("processed", count)
    folded = (await still.get(f"/messages/{mixed}/media")).json()["items"]
    assert folded == media
    before = await read_models_as_rows(pool, [older, mixed])
    formats = {row[0]: row[1] for row in before["blobs"]}
    assert formats == {
        gif.sha256: "GIF",
        jpeg.sha256: "JPEG",
        webp.sha256: "WEBP",
        hashlib.sha256(new_png).hexdigest(): "PNG",
    }

    # Replay rebuilds the very same rows from the same mixed log.
    async with pool.connection() as conn:
        for model in read_models().values():
            await replay(conn, model)
    assert await read_models_as_rows(pool, [older, mixed]) == before

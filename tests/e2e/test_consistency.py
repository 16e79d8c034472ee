"""Reads never contradict the log: single-message reads against the stream, and tokens."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from psycopg_pool import AsyncConnectionPool

from projections.media import MediaProjector
from projections.messages import MessagesProjector
from projections.processing import ProcessingStage
from projections.runner import Projector, catch_up, ensure_checkpoints, step
from tests.support import images
from tests.support.media import part, upload
from tests.support.phones import random_phone

TOKEN = "Consistency-Token"
SENT = itertools.count()
RANK = {"received": 0, "stored": 1, "processed": 2}


async def post(
    client: httpx.AsyncClient, sender: str | None = None, text: str | None = None
) -> httpx.Response:
    # A text of its own unless given: one number drawn twice within 2 s with
    # one text would be a duplicate by contract, answered 200.
    message = text or f"Hello {next(SENT)}"
    body = {"from": sender or random_phone(), "to": "+447911123456", "message": message}
    response = await client.post("/messages", json=body)
    # What was sent and all that came back: a 200 here, once in CI, is unexplained.
    assert response.status_code == 201, (body, dict(response.headers), response.text)
    return response


async def as_the_stream_tells(client: httpx.AsyncClient, message_id: str) -> dict[str, Any]:
    """What the message's own events say, read from the log (audit route)."""
    events = (await client.get(f"/messages/{message_id}/events")).json()["items"]
    processed = [e["data"] for e in events if e["type"] == "SmsProcessed"]
    return {
        "processed": bool(processed),
        "encoding": processed[0]["encoding"] if processed else None,
        "media_count": sum(e["type"] == "MediaAttached" for e in events),
    }


async def check_against_the_stream(
    client: httpx.AsyncClient, message_id: str, *, stored: bool
) -> dict[str, Any]:
    message = (await client.get(f"/messages/{message_id}")).json()
    media = (await client.get(f"/messages/{message_id}/media")).json()["items"]
    truth = await as_the_stream_tells(client, message_id)
    expected = "processed" if truth["processed"] else "stored" if stored else "received"
    assert message["status"] == expected
    assert message["encoding"] == truth["encoding"]
    assert message["media_count"] == truth["media_count"] == len(media)
    return dict(message)


async def test_each_read_is_the_stream_while_projectors_are_held_at_each_place(
    still: httpx.AsyncClient, pool: AsyncConnectionPool
) -> None:
    """The projectors are moved one event at a time, in an order that leaves the
    read model behind the stream at every stage the live service can meet:
    processed in the stream but stored in the row, images the row has not
    counted, the media model behind the messages model. Every answer must be
    what the stream says."""
    message_id = (await post(still)).json()["id"]
    messages, processing, media = MessagesProjector(), ProcessingStage(), MediaProjector()
    async with pool.connection() as conn:
        await ensure_checkpoints(conn, [p.name for p in (messages, processing, media)])

    async def one_step(projector: Projector) -> None:
        async with pool.connection() as conn:
            while await step(conn, projector, 1) == 0:
                pass

    stored = False
    seen = [await check_against_the_stream(still, message_id, stored=stored)]
    await one_step(messages)  # SmsReceived folded: a row, "stored"
    stored = True
    seen.append(await check_against_the_stream(still, message_id, stored=stored))
    await one_step(processing)  # SmsProcessed appended, the row still says "stored"
    seen.append(await check_against_the_stream(still, message_id, stored=stored))
    for seed in range(3):  # images the row has not counted
        assert (await upload(still, message_id, part(images.png(seed=900 + seed)))).status_code
        seen.append(await check_against_the_stream(still, message_id, stored=stored))
    async with pool.connection() as conn:
        while await step(conn, messages, 1):  # the row catches up an event at a time
            seen.append(await check_against_the_stream(still, message_id, stored=stored))
        await catch_up(conn, media)
    seen.append(await check_against_the_stream(still, message_id, stored=stored))

    statuses = [RANK[m["status"]] for m in seen]
    counts = [m["media_count"] for m in seen]
    assert statuses == sorted(statuses)
    assert counts == sorted(counts)
    assert (seen[-1]["status"], seen[-1]["media_count"]) == ("processed", 3)


async def test_a_write_token_makes_a_list_include_it_at_once(client: httpx.AsyncClient) -> None:
    for i in range(15):
        if i % 5 == 0:  # the rate limit: five per sender a minute
            sender = random_phone()
        created = await post(client, sender, f"number {i}")
        token = created.headers[TOKEN]
        listed = await client.get(f"/messages?from={quote(sender)}", headers={TOKEN: token})
        assert listed.status_code == 200
        ids = [m["id"] for m in listed.json()["items"]]
        assert created.json()["id"] in ids, i

    message_id = created.json()["id"]
    attached = await upload(client, message_id, part(images.png(seed=77)))
    assert attached.status_code == 201
    listed = await client.get(
        f"/messages?from={quote(sender)}&limit=1", headers={TOKEN: attached.headers[TOKEN]}
    )
    assert listed.json()["items"][0]["media_count"] == 1
    log = await client.get("/events?limit=1000", headers={TOKEN: attached.headers[TOKEN]})
    assert log.status_code == 200


async def test_with_no_projector_running_a_list_with_a_token_is_503_after_the_wait(
    still: httpx.AsyncClient,
) -> None:
    created = await post(still)
    token = created.headers[TOKEN]
    started = time.monotonic()
    listed = await still.get("/messages", headers={TOKEN: token})
    waited = time.monotonic() - started
    assert listed.status_code == 503
    assert listed.headers["retry-after"] == "1"
    assert listed.json()["type"] == "/problems/not-consistent-yet"
    assert waited >= 0.3

    # One message, and the log itself, include the write without any projector.
    one = await still.get(f"/messages/{created.json()['id']}", headers={TOKEN: token})
    assert one.status_code == 200
    log = await still.get("/events?limit=1000", headers={TOKEN: token})
    assert log.status_code == 200
    assert created.json()["id"] in [e["data"]["message_id"] for e in log.json()["items"]]


async def test_every_write_answers_a_token(still: httpx.AsyncClient) -> None:
    sender = random_phone()
    created = await post(still, sender, "Hello")
    again = await still.post(
        "/messages", json={"from": sender, "to": "+447911123456", "message": "Hello"}
    )
    assert again.status_code == 200  # a duplicate: the token names what it found
    assert again.headers[TOKEN] == created.headers[TOKEN]
    message_id = created.json()["id"]
    first = await upload(still, message_id, part(images.png(seed=5)))
    repeat = await upload(still, message_id, part(images.png(seed=5)))
    assert (first.status_code, repeat.status_code) == (201, 200)
    assert repeat.headers[TOKEN] == first.headers[TOKEN]
    assert first.headers[TOKEN] != created.headers[TOKEN]


@pytest.mark.parametrize(
    ("token", "path"),
    [
        ("not a token", "/messages"),
        ("12", "/messages"),
        ("1.99999999999999999999", "/messages"),
        ("999999999.999999999", "/messages"),  # well formed, but names no event
        ("999999999.999999999", "/events"),
        ("x.y", "/messages/0190b6a4-0000-7000-8000-000000000000"),
    ],
)
async def test_a_malformed_or_unknown_token_is_422(
    still: httpx.AsyncClient, token: str, path: str
) -> None:
    response = await still.get(path, headers={TOKEN: token})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_status_and_media_count_never_go_back_under_concurrent_writes_and_reads(
    client: httpx.AsyncClient,
) -> None:
    """Messages posted 16 at a time, each read every few ms from its 201 until it
    is processed; on a sample, three images attached one after another. No read
    may show an older status or fewer images than one before it, nor fewer images
    than the 201s already answered."""
    attached: dict[str, int] = {}
    regressions: list[str] = []

    async def follow(message_id: str, sample: bool) -> None:
        rank, count = 0, 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answered = attached.get(message_id, 0)  # 201s answered before this read is sent
            message = (await client.get(f"/messages/{message_id}")).json()
            now_rank, now_count = RANK[message["status"]], message["media_count"]
            if now_rank < rank or now_count < count or now_count < answered:
                regressions.append(f"{message_id}: {message} after {answered} images")
            if now_rank == 2 and message["encoding"] is None:
                regressions.append(f"{message_id}: processed without its encoding")
            rank, count = max(rank, now_rank), max(count, now_count)
            if rank == 2 and (not sample or attached.get(message_id) == 3):
                return
            await asyncio.sleep(0.003)
        regressions.append(f"{message_id} never reached its end state")

    async def attach_three(message_id: str, seed: int) -> None:
        for k in range(3):
            response = await upload(client, message_id, part(images.png(seed=seed * 10 + k)))
            assert response.status_code == 201
            attached[message_id] = k + 1
            listed = (await client.get(f"/messages/{message_id}/media")).json()["items"]
            if len(listed) < k + 1:
                regressions.append(f"{message_id}: {len(listed)} images listed after {k + 1}")

    async def one(i: int) -> None:
        message_id = (await post(client)).json()["id"]
        sample = i % 8 == 0
        work = [follow(message_id, sample)]
        if sample:
            work.append(attach_three(message_id, 1000 + i))
        await asyncio.gather(*work)

    for wave in range(10):
        await asyncio.gather(*(one(wave * 16 + i) for i in range(16)))
    assert regressions == []
    assert len(attached) == 20

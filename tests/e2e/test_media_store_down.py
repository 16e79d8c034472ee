"""A bucket that does not answer: uploads and image reads are 503 with
`Retry-After`, never 500, nothing is attached, and messages are still taken."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import httpx
import msgspec
import pytest
from psycopg_pool import AsyncConnectionPool

from api.http.app import create_app
from api.runtime.settings import Settings
from tests.support import images
from tests.support.asgi import running
from tests.support.media import link_rows, media_events, new_message, part, upload
from tests.support.objects import ObjectStorage
from tests.support.servers import free_port

Serving = Callable[[], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def serving(settings: Settings, s3: ObjectStorage, tmp_path: Path) -> Serving:
    """An app on a fresh prefix of the run's bucket, through the endpoint the
    environment names when it starts."""
    on_bucket = msgspec.structs.replace(settings, data_dir=tmp_path, media_url=s3.fresh_url())

    @asynccontextmanager
    async def serve() -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(on_bucket)
        async with running(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://smsq.test") as c:
                yield c

    return serve


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["detail"] == "the media store is unavailable; try again shortly"


async def test_a_bucket_that_does_not_answer_is_503_and_attaches_nothing(
    serving: Serving, pool: AsyncConnectionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, refused = images.png(seed=60), images.png(seed=61)
    async with serving() as client:
        message_id = await new_message(client)
        assert (await upload(client, message_id, part(kept))).status_code == 201
    # The same bucket, its endpoint now a port nothing listens on.
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    async with serving() as client:
        assert_unavailable(await upload(client, message_id, part(refused)))
        assert_unavailable(await client.get(f"/media/{hashlib.sha256(kept).hexdigest()}"))
        listed = await client.get(f"/messages/{message_id}/media")
        assert listed.status_code == 200
        assert [m["sha256"] for m in listed.json()["items"]] == [hashlib.sha256(kept).hexdigest()]
        assert (await new_message(client)) != message_id
    assert await media_events(pool, message_id) == 1
    assert await link_rows(pool, message_id) == 1

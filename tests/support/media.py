"""Helpers for media tests: uploads over HTTP, and what they left behind."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import msgspec
import obstore
import pytest
from psycopg_pool import AsyncConnectionPool

from api.runtime.settings import Settings
from media.objects import ObjectStore
from tests.support.phones import random_phone

Part = tuple[str, tuple[str | None, bytes, str]]


def part(data: bytes, filename: str | None = "image", content_type: str = "image/png") -> Part:
    return ("file", (filename, data, content_type))


async def new_message(client: httpx.AsyncClient) -> str:
    body = {"from": random_phone(), "to": "+447911123456", "message": "Look at this"}
    response = await client.post("/messages", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def upload(client: httpx.AsyncClient, message_id: str, *parts: Part) -> httpx.Response:
    return await client.post(f"/messages/{message_id}/media", files=list(parts))


def stored_files(root: Path) -> list[Path]:
    """Every file under the store's root, temporary ones included."""
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def scalar(pool: AsyncConnectionPool, query: str, *params: Any) -> Any:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
    assert row is not None
    return row[0]


async def media_events(pool: AsyncConnectionPool, message_id: str) -> int:
    return int(
        await scalar(
            pool,
            "SELECT count(*) FROM events WHERE stream_id = %s AND type = 'MediaAttached'",
            f"sms-{message_id}",
        )
    )


async def blob_rows(pool: AsyncConnectionPool, sha256: str) -> int:
    return int(await scalar(pool, "SELECT count(*) FROM media_blobs WHERE sha256 = %s", sha256))


async def link_rows(pool: AsyncConnectionPool, message_id: str) -> int:
    return int(
        await scalar(
            pool, "SELECT count(*) FROM message_media WHERE message_id = %s", UUID(message_id)
        )
    )


async def eventually(check: Any, within: float = 10.0) -> None:
    """Poll an async predicate until it holds, or fail at the deadline."""
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.02)


def key(sha256: str) -> str:
    """Where a store keeps a hash's bytes, relative to its root."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


@dataclass(frozen=True)
class MediaPlace:
    """Where a test's app keeps image bytes: a directory under its data
    directory, or a prefix of a bucket; what is there is looked at the same way."""

    data_dir: Path
    url: str | None = None

    @property
    def kind(self) -> str:
        return "local" if self.url is None else "s3"

    def applied_to(self, settings: Settings) -> Settings:
        return msgspec.structs.replace(settings, data_dir=self.data_dir, media_url=self.url)

    def env(self) -> dict[str, str]:
        """The variables that give `smsq serve` this place."""
        return {"SMSQ_DATA_DIR": str(self.data_dir)} | (
            {"SMSQ_MEDIA_URL": self.url} if self.url else {}
        )

    async def names(self) -> list[str]:
        """Everything the store holds (temporary files too), relative to its root."""
        if self.url is not None:
            return await ObjectStore(self.url).names()
        root = self.data_dir / "media"
        return [p.relative_to(root).as_posix() for p in stored_files(root)]

    async def remove(self, sha256: str) -> None:
        """Take a hash's bytes out of the store behind the service's back."""
        if self.url is not None:
            await obstore.delete_async(ObjectStore(self.url).client, key(sha256))
        else:
            (self.data_dir / "media" / key(sha256)).unlink()

    def files_beside(self, root: Path) -> list[Path]:
        """Files under `root` that are no part of the store."""
        everything = (p for p in root.rglob("*") if p.is_file())
        return sorted(p for p in everything if not p.is_relative_to(self.data_dir / "media"))


def media_place(kind: str, data_dir: Path, request: pytest.FixtureRequest) -> MediaPlace:
    """A store of its own: `data_dir/media`, or a fresh prefix of the run's bucket."""
    if kind == "local":
        return MediaPlace(data_dir)
    return MediaPlace(data_dir, request.getfixturevalue("s3").fresh_url())

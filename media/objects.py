"""Image bytes in an S3-compatible bucket, behind the same interface as the directory.

`SMSQ_MEDIA_URL=s3://bucket/prefix` names the bucket and the prefix; everything
else comes from the standard `AWS_*` variables (`AWS_ENDPOINT_URL_S3`, else
`AWS_ENDPOINT_URL`; `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
...), read by the client itself. Objects are named as the local store names its files
(`prefix/ab/cd/<sha256>`), so a media directory copied into a bucket
(`aws s3 sync`) is a valid store as it stands.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio.to_thread
import obstore
from obstore.exceptions import AlreadyExistsError, BaseError
from obstore.store import S3Store

from media.store import CHUNK, Blob, LocalStore, MediaStore, StoreUnavailable, key_of

if TYPE_CHECKING:
    from obstore import BytesStream

SCHEME = "s3://"

# A PUT that does not land in this many tries answers the upload with an
# error; the bytes were not kept, so no event is appended either.
ATTEMPTS = 3


class ObjectStore:
    """An S3 bucket (or a prefix of one). A PUT that S3 answered 200 is durable
    (S3 acknowledges a write only once it is stored redundantly), and reads
    after it see it (S3 is strongly consistent for new objects), so the event
    may be appended as soon as `put` returns."""

    def __init__(self, url: str, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or ""
        self.url = url
        self.client = S3Store.from_url(
            url,
            client_options={
                # An endpoint given as http:// (a local MinIO, a test server) is
                # meant as given; the client refuses plain HTTP otherwise.
                "allow_http": endpoint.startswith("http://"),
                "connect_timeout": timedelta(seconds=5),
                # The whole request, body included: a GET is streamed at the pace
                # of the client that asked for it, so this is generous.
                "timeout": timedelta(minutes=5),
            },
            retry_config={"max_retries": 3, "retry_timeout": timedelta(seconds=20)},
        )

    @property
    def directory(self) -> None:
        return None

    async def put(self, sha256: str, source: BinaryIO) -> None:
        with _answered():
            await self._put(key_of(sha256), source)

    async def _put(self, key: str, source: BinaryIO) -> None:
        data: bytes | None = None
        for attempt in range(ATTEMPTS):
            # Known bytes (the same image attached again) cost a HEAD, not an upload.
            if await self._exists(key):
                return
            if data is None:
                # One PUT with its length: the image is read into memory for it
                # (the uploads in flight per process are capped, so these are too).
                data = await anyio.to_thread.run_sync(source.read)
            try:
                # `If-None-Match: *`: the object is created only if no object has
                # that name, so two uploads racing between the HEAD and the PUT
                # still store it once; the loser is told it exists already.
                await obstore.put_async(self.client, key, data, mode="create", use_multipart=False)
            except AlreadyExistsError:
                return
            except BaseError:
                # AWS answers 409 to a conditional PUT while another one of the
                # same name is in flight; that one may yet fail, so look again.
                if attempt == ATTEMPTS - 1:
                    raise
                await asyncio.sleep(0.1 * 2**attempt)
            else:
                return

    async def get(self, sha256: str) -> Blob | None:
        try:
            with _answered():
                result = await obstore.get_async(self.client, key_of(sha256))
        except FileNotFoundError:
            return None
        # The GET has been answered with its headers; the body is read from the
        # connection as the chunks are asked for.
        return Blob(result.meta["size"], _chunks(result.stream(min_chunk_size=CHUNK)))

    async def names(self) -> list[str]:
        """Every object under the prefix, relative to it, sorted."""
        with _answered():
            found = [m["path"] async for batch in obstore.list(self.client) for m in batch]
        return sorted(found)

    async def _exists(self, key: str) -> bool:
        try:
            await obstore.head_async(self.client, key)
        except FileNotFoundError:
            return False
        return True


@contextlib.contextmanager
def _answered() -> Iterator[None]:
    """The client's errors, but for an object that is missing or exists
    already (answers, not failures), as `StoreUnavailable`."""
    try:
        yield
    except (FileNotFoundError, AlreadyExistsError):
        raise
    except BaseError as error:
        raise StoreUnavailable(f"{type(error).__name__}: {error}") from error


async def _chunks(stream: BytesStream) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


def open_store(media_url: str | None, data_dir: Path) -> MediaStore:
    """The store `SMSQ_MEDIA_URL` names: a bucket, or (unset) `data_dir/media`."""
    if media_url is None:
        return LocalStore(data_dir / "media")
    return ObjectStore(media_url)

"""An S3 API for the tests: moto's standalone server, or the one the caller names.

With `SMSQ_TEST_MEDIA_URL=s3://bucket[/prefix]` set, the tests use that bucket
with the caller's own `AWS_*` variables (MinIO, AWS, any S3-compatible store)
and start nothing. Unset, a moto server is started on a free loopback port for
the run, with a bucket of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.servers import free_port, local_client

MOTO = str(Path(sys.executable).parent / "moto_server")


@dataclass(frozen=True)
class ObjectStorage:
    """A bucket (or a prefix of one) the run may write to, and the `AWS_*`
    variables that reach it; each user takes a prefix of its own."""

    url: str
    env: Mapping[str, str]
    described: str

    def fresh_url(self) -> str:
        return f"{self.url.rstrip('/')}/{uuid.uuid4().hex}"


@contextmanager
def object_storage(environ: Mapping[str, str], workdir: Path) -> Iterator[ObjectStorage]:
    given = environ.get("SMSQ_TEST_MEDIA_URL")
    if given:
        yield ObjectStorage(given, {}, f"{given}, from SMSQ_TEST_MEDIA_URL")
        return
    with moto_server(workdir / "moto.log") as endpoint:
        bucket = f"smsq-test-{uuid.uuid4().hex[:12]}"
        httpx.put(f"{endpoint}/{bucket}", timeout=10).raise_for_status()
        env = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "smsq-test",
            "AWS_SECRET_ACCESS_KEY": "smsq-test",
            "AWS_REGION": "us-east-1",
        }
        yield ObjectStorage(f"s3://{bucket}", env, f"s3://{bucket} on moto's server at {endpoint}")


@contextmanager
def moto_server(log: Path, host: str = "127.0.0.1") -> Iterator[str]:
    """moto's S3 API server on a free port until the block ends; yields its URL."""
    port = free_port()
    endpoint = f"http://{host}:{port}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [MOTO, "-H", host, "-p", str(port)],
            env={**os.environ},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        with local_client(timeout=1) as client:  # one for every probe (servers.wait_ready)
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"moto_server exited with {proc.returncode}:\n{log.read_text()}"
                    )
                try:
                    client.get(f"{endpoint}/moto-api/")
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"moto_server not up after 30 s:\n{log.read_text()}"
                        ) from None
                    time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

"""The yardsticks for ingest: the same server software, with less behind it.

- `echo`: Litestar decodes the POST /messages body into the same struct the
  service uses and answers 201 with it. The framework's ceiling.
- `crud`: the same, plus one INSERT through a psycopg pool (same pool size and
  connection settings as the service) into a table shaped and indexed like
  `sms_messages`. What a plain CRUD service would do.

Both are served by granian with the settings `smsq serve` uses (api/cli/serving.py):

    python -m bench.apps echo|crud --port 8001 --workers 1
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, Request, get, post
from psycopg_pool import AsyncConnectionPool
from uuid_utils.compat import uuid7

from api.http.schemas import Message, SendSms
from api.runtime.settings import load_settings
from projections.log import rfc3339

CRUD_TABLE = """
CREATE TABLE IF NOT EXISTS crud_messages (LIKE sms_messages INCLUDING ALL)
"""

_INSERT = """
INSERT INTO crud_messages (id, "from", "to", message, received_at, status)
VALUES (%s, %s, %s, %s, clock_timestamp(), 'stored') RETURNING received_at
"""


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@post("/messages", status_code=201)
async def echo(data: SendSms) -> SendSms:
    return data


@post("/messages", status_code=201)
async def insert(data: SendSms, request: Request[Any, Any, Any]) -> Message:
    pool: AsyncConnectionPool[Any] = request.app.state.pool
    message_id = uuid7()
    async with pool.connection() as conn:
        cur = await conn.execute(_INSERT, (message_id, data.from_, data.to, data.message))
        row = await cur.fetchone()
    assert row is not None
    return Message(
        id=message_id,
        from_=data.from_,
        to=data.to,
        message=data.message,
        status="stored",
        received_at=rfc3339(row[0]),
    )


def echo_app() -> Litestar:
    return Litestar(route_handlers=[echo, healthz])


def crud_app() -> Litestar:
    settings = load_settings()
    url = os.environ["SMSQ_DATABASE_URL"]

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncConnectionPool(
            url,
            min_size=min(2, settings.pool_max),
            max_size=settings.pool_max,
            timeout=settings.db_timeout,
            kwargs={"autocommit": True},
        ) as pool:
            app.state.pool = pool
            yield

    return Litestar(route_handlers=[insert, healthz], lifespan=[lifespan])


def main() -> None:
    from granian import Granian
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("app", choices=["echo", "crud"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    # The same server settings as `smsq serve`.
    Granian(
        f"bench.apps:{args.app}_app",
        factory=True,
        interface=Interfaces.ASGI,
        address="127.0.0.1",
        port=args.port,
        workers=args.workers,
        http1_settings=HTTP1Settings(header_read_timeout=10_000),
        log_level=LogLevels.warning,
    ).serve()


if __name__ == "__main__":
    main()

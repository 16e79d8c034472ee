"""The Litestar application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from psycopg_pool import AsyncConnectionPool

from api.health import healthz, readyz
from api.messages import MessagesController
from api.problems import exception_handlers
from api.services import Services, provide_services
from api.settings import Settings, load_settings
from commands.group_commit import GroupCommitter
from commands.receive_sms import receive_batch

log = logging.getLogger(__name__)


def open_pool(url: str, settings: Settings, *, name: str) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        url,
        min_size=min(2, settings.pool_max),
        max_size=settings.pool_max,
        timeout=settings.db_timeout,
        name=name,
        open=False,
        kwargs={
            "autocommit": True,
            # A transaction left open anywhere holds every projector back
            # (readers stay below the oldest one in flight): cut it off.
            "options": "-c idle_in_transaction_session_timeout=10000",
        },
    )


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    if settings.database_url is None:
        raise RuntimeError("SMSQ_DATABASE_URL is not set (`smsq serve` sets it for its workers)")
    url = settings.database_url

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = open_pool(url, settings, name="api")
        # Not waiting: the service starts and answers 503 until the database does.
        await pool.open(wait=False)
        receive = GroupCommitter(
            pool,
            receive_batch,
            max_batch=settings.batch_max,
            concurrency=settings.batch_concurrency,
        )
        app.state.services = Services(settings=settings, pool=pool, receive=receive)
        try:
            yield
        finally:
            await receive.drain()
            await pool.close()

    return Litestar(
        route_handlers=[MessagesController, healthz, readyz],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="smsq",
            version="1.0.0",
            description="Event-sourced SMS intake: every change is an event; queries read folds.",
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
        ),
    )


def app_from_env() -> Litestar:
    """Factory for the HTTP server's workers: settings come from the environment."""
    return create_app(load_settings())

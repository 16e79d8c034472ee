"""The Litestar application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from psycopg_pool import AsyncConnectionPool

from api.health import healthz, readyz
from api.lifecycle import background
from api.messages import MessagesController
from api.pooling import check_if_disturbed
from api.problems import exception_handlers
from api.services import Services, provide_services
from api.settings import Settings, load_settings
from commands.group_commit import GroupCommitter
from commands.notify import Notifier
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
        # A connection broken by a database restart is noticed here and
        # replaced, instead of failing the request that drew it.
        check=check_if_disturbed,
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
        # The pool opens without waiting: the service starts, and answers 503
        # until the database does.
        async with open_pool(url, settings, name="api") as pool, AsyncExitStack() as stack:
            notifier = Notifier(pool)
            receive = GroupCommitter(
                pool,
                receive_batch,
                max_batch=settings.batch_max,
                concurrency=settings.batch_concurrency,
                on_commit=notifier.poke,
            )
            app.state.services = Services(settings=settings, pool=pool, receive=receive)
            if settings.run_projectors:
                await stack.enter_async_context(background(url, pool))
            try:
                yield
            finally:
                # In-flight requests get their answers before the pool goes away.
                await receive.drain()
                await notifier.close()

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

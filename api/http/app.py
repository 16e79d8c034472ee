"""The Litestar application factory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import psycopg
from anyio import CapacityLimiter
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from psycopg_pool import PoolTimeout

from api.http.access import SCHEME, Access, DeclareSecurity, require_scope
from api.http.audit import AuditController
from api.http.connections import CloseUnread
from api.http.feed import event_stream
from api.http.health import healthz, readyz
from api.http.media import MessageMediaController
from api.http.media_files import media_file
from api.http.messages import MessagesController
from api.http.metrics import metrics
from api.http.observe import RequestObserver
from api.http.openapi import DeclareContract, answer_options
from api.http.problems import exception_handlers
from api.http.process_metrics import ProcessMetrics
from api.http.readiness import Readiness
from api.http.schema_page import PATH, schema_page, schema_router
from api.http.seals import SealsController
from api.http.services import Services, provide_services
from api.http.unread_body import DiscardUnreadBody
from api.http.upload_limits import UploadGate
from api.http.uploads import request_limit
from api.runtime.background import background, running_task
from api.runtime.logs import configure_logging
from api.runtime.pooling import open_pool
from api.runtime.process import freeze_start_up
from api.runtime.sealing import load_or_create_key, seal_key_path
from api.runtime.settings import Settings, load_settings
from commands.group_commit import GroupCommitter
from commands.notify import Notifier
from commands.receive_sms import receive_batch
from media.objects import open_store
from projections.feed import LogFeed
from projections.listener import Listener, listening
from projections.progress import Progress
from projections.sealer import Sealer

log = logging.getLogger(__name__)

# Images decoded at once per process: each decode may hold 40 megapixels at 4 bytes each.
DECODERS = 2


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()
    if settings.database_url is None:
        raise RuntimeError("SMSQ_DATABASE_URL is not set (`smsq serve` sets it for its workers)")
    url = settings.database_url
    counted = ProcessMetrics()

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
            listener = Listener(url)
            access = Access(pool, listener)
            readiness = Readiness(pool, settings.db_timeout)
            store = open_store(settings.media_url, settings.data_dir)
            if store.directory is not None:
                # Uploads are spooled there, and its free space is measured there.
                store.directory.mkdir(parents=True, exist_ok=True)
            progress = Progress(pool, listener)
            feed = LogFeed(url, listener)
            stack.push_async_callback(feed.aclose)
            app.state.services = Services(
                settings=settings,
                pool=pool,
                receive=receive,
                access=access,
                metrics=counted,
                store=store,
                decoders=CapacityLimiter(DECODERS),
                uploads=UploadGate(
                    settings.max_uploads_in_flight, settings.max_upload_bytes_in_flight
                ),
                progress=progress,
                feed=feed,
                readiness=readiness,
            )
            # Both are tried once before the first request, then kept fresh in the
            # background: keys when one changes, readiness every second.
            await asyncio.gather(_first(access.load(), "API keys not loaded"), readiness.probe())
            await stack.enter_async_context(running_task(access.keep_loaded()))
            await stack.enter_async_context(running_task(readiness.keep_probing()))
            if settings.run_projectors:
                sealer = (
                    Sealer(load_or_create_key(seal_key_path(settings)))
                    if settings.run_sealer
                    else None
                )
                await stack.enter_async_context(background(url, pool, listener, sealer))
            await stack.enter_async_context(listening(listener))
            try:
                yield
            finally:
                # In-flight requests get their answers before the pool goes away.
                await receive.drain()
                await notifier.close()

    # Uploads get a body limit of their own; every other route keeps the JSON one.
    largest_upload = request_limit(settings.max_media_bytes)
    media = Router(
        "/",
        route_handlers=[MessageMediaController, media_file],
        request_max_body_size=largest_upload,
        middleware=[DiscardUnreadBody(largest_upload, settings.body_timeout)],
    )
    app = Litestar(
        route_handlers=[
            MessagesController,
            media,
            AuditController,
            event_stream,
            SealsController,
            metrics,
            healthz,
            readyz,
        ],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        guards=[require_scope],
        before_request=answer_options,
        plugins=[DeclareSecurity(), DeclareContract()],
        exception_handlers=exception_handlers,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        # Logging is configured once per process (api.runtime.logs), not by each app.
        logging_config=None,
        openapi_config=OpenAPIConfig(
            title="smsq",
            version="1.0.0",
            description="Event-sourced SMS intake: every change is an event; queries read folds.",
            path=PATH,
            render_plugins=[schema_page()],
            openapi_router=schema_router(),
            components=Components(
                security_schemes={
                    SCHEME: SecurityScheme(
                        type="http",
                        scheme="bearer",
                        description="An API key from `smsq keys create`; each operation"
                        " lists the scope it needs.",
                    )
                }
            ),
        ),
    )
    # Outermost, so that requests matching no route are counted and logged too.
    app.asgi_handler = RequestObserver(CloseUnread(app.asgi_handler), counted)
    return app


async def _first(load: Coroutine[Any, Any, None], failed: str) -> None:
    try:
        await load
    except (psycopg.Error, PoolTimeout) as error:
        log.warning("%s: %s; trying again in the background", failed, error)


def app_from_env() -> Litestar:
    """Factory for the HTTP server's worker processes: settings come from the
    environment, and the process serves this one app for the rest of its life."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.on_startup.append(freeze_start_up)  # after the lifespan has opened everything
    return app

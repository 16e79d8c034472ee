"""The Litestar application factory."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from anyio import CapacityLimiter
from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

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
from api.http.seals import SealsController
from api.http.services import Services, provide_services
from api.http.uploads import request_limit
from api.runtime.background import background
from api.runtime.logs import configure_logging
from api.runtime.pooling import open_pool
from api.runtime.process import freeze_start_up
from api.runtime.sealing import load_or_create_key, seal_key_path
from api.runtime.settings import Settings, is_loopback, load_settings
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
            access = Access(
                pool, loopback=is_loopback(settings.host), ttl=settings.auth_cache_seconds
            )
            listener = Listener(url)
            progress = Progress(pool, listener)
            feed = LogFeed(url, listener)
            stack.push_async_callback(feed.aclose)
            app.state.services = Services(
                settings=settings,
                pool=pool,
                receive=receive,
                access=access,
                metrics=counted,
                store=open_store(settings.media_url, settings.data_dir),
                decoders=CapacityLimiter(DECODERS),
                progress=progress,
                feed=feed,
            )
            if settings.run_projectors:
                sealer = Sealer(load_or_create_key(seal_key_path(settings)))
                await stack.enter_async_context(background(url, pool, listener, sealer))
            await stack.enter_async_context(listening(listener))
            try:
                yield
            finally:
                # In-flight requests get their answers before the pool goes away.
                await receive.drain()
                await notifier.close()

    # Uploads get a body limit of their own; every other route keeps the JSON one.
    media = Router(
        "/",
        route_handlers=[MessageMediaController, media_file],
        request_max_body_size=request_limit(settings.max_media_bytes),
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
            path="/schema",
            render_plugins=[ScalarRenderPlugin()],
            # The document describes every route: readable by any key that may read.
            # Kept out of the document it serves: it is not part of the API a client calls.
            openapi_router=Router(
                "/schema", opt={"scope": "read"}, route_handlers=[], include_in_schema=False
            ),
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


def app_from_env() -> Litestar:
    """Factory for the HTTP server's worker processes: settings come from the
    environment, and the process serves this one app for the rest of its life."""
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    app.on_startup.append(freeze_start_up)  # after the lifespan has opened everything
    return app

"""What request handlers need, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from anyio import CapacityLimiter
from litestar.datastructures import State
from psycopg_pool import AsyncConnectionPool

from api.http.access import Access
from api.http.process_metrics import ProcessMetrics
from api.http.readiness import Readiness
from api.http.upload_limits import UploadGate
from api.runtime.settings import Settings
from commands.group_commit import GroupCommitter
from commands.receive_sms import Outcome, ReceiveRequest
from media.store import MediaStore
from projections.feed import LogFeed
from projections.progress import Progress


@dataclass(frozen=True)
class Services:
    settings: Settings
    pool: AsyncConnectionPool[Any]
    receive: GroupCommitter[ReceiveRequest, Outcome]
    store: MediaStore
    decoders: CapacityLimiter
    uploads: UploadGate
    access: Access
    metrics: ProcessMetrics
    progress: Progress
    feed: LogFeed
    readiness: Readiness


def provide_services(state: State) -> Services:
    services: Services = state.services
    return services

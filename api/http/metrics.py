"""GET /metrics: Prometheus text by default, a small JSON summary on request.

Two kinds of numbers, from two places:
- about the messages (totals, queue, processing time, projection lag): read
  from the database (the `message_counters` read model and the checkpoints),
  so every API process and host reports the same values and a restart loses
  nothing; these are gauges and counters of the whole service: on several
  hosts, aggregate them with max(), not sum();
- about this server's HTTP traffic and decisions that write no event (rate
  limited, duplicates): counted in the process. `smsq serve` runs its workers
  in prometheus_client's multiprocess mode, so one scrape reports the sum over
  all workers of the host; across hosts, sum() them as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import Request, get
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Schema
from litestar.response import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from api.http.openapi import Documented
from api.http.problems import UNAVAILABLE, refusals
from api.http.services import Services
from projections.counters import BUCKETS, Counters, read_counters
from projections.lag import LogHealth, read_health
from projections.sealer import NAME as SEALER


class _Following:
    """Clients this process's live-feed reader hands events to, counted when asked."""

    def __init__(self, followers: int) -> None:
        self.followers = followers

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "smsq_feed_followers",
            "Clients following GET /events/stream from the process that answered",
            value=self.followers,
        )


class _Snapshot:
    """What the database says, as Prometheus metric families."""

    def __init__(self, counters: Counters, health: LogHealth) -> None:
        self.counters = counters
        self.health = health

    def collect(self) -> Iterator[Metric]:
        c, h = self.counters, self.health
        yield CounterMetricFamily(
            "smsq_messages_received", "Messages accepted (SmsReceived)", value=c.received
        )
        yield CounterMetricFamily(
            "smsq_messages_processed", "Messages processed (SmsProcessed)", value=c.processed
        )
        yield CounterMetricFamily(
            "smsq_media_attached", "Images attached (MediaAttached)", value=c.media_attached
        )
        yield GaugeMetricFamily(
            "smsq_queue_size", "Messages received and not yet processed", value=c.queue_size
        )
        cumulative, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), c.processing_buckets, strict=False):
            running += count
            cumulative.append((bound, running))
        yield HistogramMetricFamily(
            "smsq_processing_seconds",
            "SmsProcessed.processed_at - SmsReceived.received_at, database clock",
            buckets=cumulative,
            sum_value=c.processing_seconds_sum,
        )
        yield GaugeMetricFamily(
            "smsq_log_position", "Position of the last event in the log", value=h.last_position
        )
        yield GaugeMetricFamily(
            "smsq_oldest_transaction_seconds",
            "Age of the oldest open transaction holding an xid (it holds every projector back)",
            value=h.oldest_transaction_seconds,
        )
        lag = GaugeMetricFamily(
            "smsq_projection_lag_seconds",
            "Age of the oldest committed event a projector has not folded (0: caught up)",
            labels=["projector"],
        )
        checkpoint = GaugeMetricFamily(
            "smsq_projection_position",
            "Position of the last event a projector folded",
            labels=["projector"],
        )
        stalled = GaugeMetricFamily(
            "smsq_projection_stalled",
            "1 while a projector is stopped at an event it cannot fold (see /readyz), else 0",
            labels=["projector"],
        )
        seal_lag = GaugeMetricFamily(
            "smsq_seal_lag_seconds",
            "Age of the oldest committed event not yet sealed (0: all sealed)",
        )
        for p in h.projectors:
            lag.add_metric([p.name], p.seconds)
            checkpoint.add_metric([p.name], p.position)
            stalled.add_metric([p.name], 0 if p.stalled_position is None else 1)
            if p.name == SEALER:
                seal_lag.add_metric([], p.seconds)
        yield lag
        yield checkpoint
        yield stalled
        yield seal_lag


class MetricsSummary(msgspec.Struct):
    total_processed: int
    queue_size: int
    avg_processing_ms: float


# Litestar adds the charset to a text/* type itself; given twice, a strict client
# (or proxy) may refuse the answer.
EXPOSITION = CONTENT_TYPE_LATEST.replace("; charset=utf-8", "")


@dataclass
class MetricsOperation(Documented):
    """One 200, in two forms: the text by default, the summary for Accept: application/json."""

    def __post_init__(self) -> None:
        super().__post_init__()
        ok = (self.responses or {})["200"]
        assert isinstance(ok, OpenAPIResponse)
        text = OpenAPIMediaType(
            schema=Schema(type=OpenAPIType.STRING, description="Prometheus text exposition")
        )
        ok.content = {"text/plain": text, **(ok.content or {})}


@get(
    "/metrics",
    opt={"scope": "metrics"},
    summary="Service metrics (Prometheus text, or JSON with Accept: application/json)",
    tags=["operations"],
    media_type=EXPOSITION,
    operation_class=MetricsOperation,
    responses={
        200: ResponseSpec(
            MetricsSummary,
            description="Prometheus text exposition; with Accept: application/json, a summary",
            generate_examples=False,
        ),
        **refusals(UNAVAILABLE),
    },
)
async def metrics(
    request: Request[Any, Any, Any], services: NamedDependency[Services]
) -> Response[Any]:
    async with services.pool.connection() as conn:
        counters = await read_counters(conn)
        health = None if _wants_json(request) else await read_health(conn)
    if health is None:
        summary = MetricsSummary(
            total_processed=counters.processed,
            queue_size=counters.queue_size,
            avg_processing_ms=round(counters.avg_processing_ms, 3),
        )
        return Response(summary, media_type="application/json")
    stored = CollectorRegistry()
    stored.register(_Snapshot(counters, health))
    here = CollectorRegistry()
    here.register(_Following(services.feed.followers))
    body = generate_latest(stored) + generate_latest(here) + services.metrics.exposition()
    return Response(body, media_type=EXPOSITION)


def _wants_json(request: Request[Any, Any, Any]) -> bool:
    best = request.accept.best_match(["text/plain", "application/json"], default="text/plain")
    return best == "application/json"

"""HTTP and write-side counters kept by this process.

In multiprocess mode (`smsq serve` sets PROMETHEUS_MULTIPROC_DIR for its
workers) every worker writes its values to a file of its own, and a scrape
answered by any one of them adds up all of them.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ProcessMetrics:
    """Counters kept by this process (and, in multiprocess mode, summed over its siblings)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "smsq_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "smsq_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "smsq_rate_limited",
            "POST /messages refused by the per-sender rate limit (429)",
            registry=self.registry,
        )
        self.duplicates = Counter(
            "smsq_duplicates",
            "POST /messages answered with an earlier identical message (200)",
            registry=self.registry,
        )
        self.consistency_timeouts = Counter(
            "smsq_consistency_timeouts",
            "Reads with a Consistency-Token answered 503: the read model did not pass it in time",
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        # Labels come from a closed set: a client inventing methods must not
        # be able to grow the series (or the multiprocess files) without bound.
        labels = (method if method in _METHODS else "OTHER", route, status)
        children = self._children.get(labels)
        if children is None:
            children = (self._requests.labels(*labels), self._latency.labels(*labels))
            self._children[labels] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        directory = os.environ.get(MULTIPROCESS_ENV)
        if not directory:
            return generate_latest(self.registry)
        merged = CollectorRegistry()
        MultiProcessCollector(merged, directory)  # type: ignore[no-untyped-call]
        return generate_latest(merged)

"""HTTP request metrics (the 5xx rate and latency the alerts and the dashboard read), by a pure ASGI middleware:

    tributary_http_requests_total{method, route, status}
    tributary_http_request_duration_seconds{method, route}   (until the response starts: streams are not timed
                                                             to their end)

`route` is the matched route's template (`/topics/{topic}/events`), never the raw path, and `other` when nothing
matched, so that no caller can grow the label set. Websockets are not counted here (the stream's own metrics).
"""

from __future__ import annotations

import time
import weakref

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "tributary_http_requests_total", "HTTP requests answered", ["method", "route", "status"], registry=registry
        )
        self.duration = Histogram(
            "tributary_http_request_duration_seconds",
            "Time until the response started",
            ["method", "route"],
            buckets=BUCKETS,
            registry=registry,
        )
        # The labelled children, remembered: `labels()` costs a lock and a lookup per call. Bounded as the label
        # values are (methods, route templates, status codes).
        self._durations: dict[tuple[str, str], Histogram] = {}
        self._counts: dict[tuple[str, str, int], Counter] = {}

    def observe(self, labels: tuple[str, str], seconds: float) -> None:
        child = self._durations.get(labels)
        if child is None:
            child = self._durations[labels] = self.duration.labels(*labels)
        child.observe(seconds)

    def count(self, labels: tuple[str, str], status: int) -> None:
        key = (*labels, status)
        child = self._counts.get(key)
        if child is None:
            child = self._counts[key] = self.requests.labels(*labels, str(status))
        child.inc()


# One set per registry: several apps (tests, one process) may share the default registry.
_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, _Metrics] = weakref.WeakKeyDictionary()
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def metrics_for(registry: CollectorRegistry) -> _Metrics:
    found = _BY_REGISTRY.get(registry)
    if found is None:
        found = _BY_REGISTRY[registry] = _Metrics(registry)
    return found


class HttpMetrics:
    def __init__(self, app: ASGIApp, *, registry: CollectorRegistry = REGISTRY) -> None:
        self.app = app
        self.metrics = metrics_for(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # what the caller gets if the app fails before answering
        labels: tuple[str, str] | None = None  # set when the response starts

        async def send_wrapper(message: Message) -> None:
            nonlocal status, labels
            if message["type"] == "http.response.start":
                status, labels = message["status"], _labels(scope)
                self.metrics.observe(labels, time.perf_counter() - start)
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            if labels is None:
                labels = _labels(scope)
                self.metrics.observe(labels, time.perf_counter() - start)
            self.metrics.count(labels, status)


def _labels(scope: Scope) -> tuple[str, str]:
    method = scope.get("method", "")
    route = getattr(scope.get("route"), "path", None)
    return (method if method in METHODS else "other"), (route if isinstance(route, str) else "other")

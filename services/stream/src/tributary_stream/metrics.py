"""Prometheus metrics of one stream instance (its own registry, so that several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class StreamMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("tributary_stream_connections", "Open client connections", ["transport"], registry=r)
        self.subscriptions = Gauge("tributary_stream_subscriptions", "Active subscriptions", ["kind"], registry=r)
        self.bindings = Gauge("tributary_stream_bindings", "Bindings of the instance queue", registry=r)
        self.messages_in = Counter(
            "tributary_stream_messages_in", "Messages consumed from the broker", ["exchange"], registry=r
        )
        self.messages_out = Counter(
            "tributary_stream_messages_out", "Frames written to clients", ["transport"], registry=r
        )
        self.gaps = Counter("tributary_stream_gaps", "Gap frames sent to clients", ["reason"], registry=r)
        self.refused = Counter(
            "tributary_stream_refused", "Refused client frames and connections", ["code"], registry=r
        )
        self.send_queue_depth = Gauge(
            "tributary_stream_send_queue_depth", "Frames queued for clients, all sockets", registry=r
        )
        self.send_queue_max = Gauge("tributary_stream_send_queue_max", "Deepest send queue of any socket", registry=r)
        self.broker_connected = Gauge(
            "tributary_stream_broker_connected", "1 while the instance queue is consumed", registry=r
        )
        self.dead_lettered = Counter(
            "tributary_stream_dead_lettered",
            "Broker messages the stream cannot use, sent to tributary.dead",
            ["reason"],
            registry=r,
        )
        self.dead_letters_lost = Counter(
            "tributary_stream_dead_letters_lost",
            "Dead letters the broker never took (outbox full, stopped)",
            ["reason"],
            registry=r,
        )

    def track_queues(self, depths: Callable[[], list[int]]) -> None:
        # Computed at scrape time: no bookkeeping on the hot path.
        self.send_queue_depth.set_function(lambda: float(sum(depths())))
        self.send_queue_max.set_function(lambda: float(max(depths(), default=0)))

"""Prometheus metrics of one ingest instance, in their own registry (several engines may share a process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        p = "tributary_ingest_"
        self.leases_held = Gauge(p + "leases_held", "Leases this instance holds", ["source"], registry=r)
        self.capacity = Gauge(p + "capacity", "Subscriptions this instance may hold", ["source"], registry=r)
        self.demanded = Gauge(p + "demanded_sids", "Sids currently demanded of this source", ["source"], registry=r)
        self.reads = Counter(p + "reads", "Reads started (subscribe calls that succeeded)", ["source"], registry=r)
        self.batches = Counter(
            p + "batches_published", "Sample batches confirmed by the broker", ["source"], registry=r
        )
        self.samples = Counter(p + "samples_published", "Samples confirmed by the broker", ["source"], registry=r)
        self.samples_per_s = Gauge(
            p + "samples_per_second", "Samples published per second (over the last interval)", ["source"], registry=r
        )
        self.dropped = Counter(
            p + "samples_dropped", "Samples dropped before publishing", ["source", "reason"], registry=r
        )
        self.errors = Counter(
            p + "errors",
            "Errors: connector (a read failed), data, bad_params, secret, publish, lease, refused",
            ["source", "kind"],
            registry=r,
        )
        self.leases_lost = Counter(p + "leases_lost", "Leases lost to a failed renewal", ["source"], registry=r)
        self.leases_handed_over = Counter(
            p + "leases_handed_over", "Leases handed to other instances by rebalancing", ["source"], registry=r
        )
        self.dead_lettered = Counter(
            p + "dead_lettered", "Control messages sent to tributary.dead, by reason", ["reason"], registry=r
        )
        self.dead_letters_lost = Counter(
            p + "dead_letters_lost", "Dead letters the broker did not take (logged), by reason", ["reason"], registry=r
        )

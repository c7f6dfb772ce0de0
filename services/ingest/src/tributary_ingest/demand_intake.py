"""Demand messages for one source in: each subscription's params validated (secrets resolved) and tracked, the
refused ones remembered for the status, the sids that are not canonical for their params noted (once)."""

from __future__ import annotations

import logging
from typing import Any

from tributary_common.canonical import canonical_sid
from tributary_common.control import Demand

from .demand import DemandTracker
from .metrics import IngestMetrics
from .sdk import BadParams, Connector, SecretRefused, SecretResolver

log = logging.getLogger(__name__)


class DemandIntake:
    def __init__(
        self, name: str, connector_cls: type[Connector[Any]], secrets: SecretResolver, metrics: IngestMetrics
    ) -> None:
        self.name = name
        self.connector_cls = connector_cls
        self.secrets = secrets
        self.metrics = metrics
        self.tracker = DemandTracker()
        self.rejected: dict[str, tuple[str, float]] = {}  # sid -> (why, until when it is remembered)
        # The announced schema, from which the hub makes params canonical; demanded sid -> its canonical sid.
        self.schema = connector_cls.params_schema()
        self.noncanonical: dict[str, str] = {}

    def on_demand(self, demand: Demand, now: float) -> bool:
        """Record `demand`; True when it names a sid not demanded before."""
        new = False
        for sub in demand.subscriptions:
            if self.tracker.knows(sub.sid):
                new |= self.tracker.heartbeat(sub.sid, self.tracker.params(sub.sid), demand.ttl_s, now)
                continue
            try:
                params = self.connector_cls.parse_params(sub.params, self.secrets)
            except BadParams as exc:
                if sub.sid not in self.rejected:
                    log.warning("rejected subscription %s/%s from %s: %s", self.name, sub.sid, demand.requester, exc)
                    kind = "secret" if isinstance(exc, SecretRefused) else "bad_params"
                    self.metrics.errors.labels(self.name, kind).inc()
                self.rejected[sub.sid] = (str(exc), now + demand.ttl_s)
                continue
            new |= self.tracker.heartbeat(sub.sid, params, demand.ttl_s, now)
            self._check_sid(sub.sid, sub.params, demand.requester)
        return new

    def _check_sid(self, sid: str, params: dict[str, Any], requester: str) -> None:
        """Served as demanded (the requester listens on that sid), but a sid that is not the canonical one of its
        params (a unitop stored before sids were canonical) may be a second read of a tag: say so, once."""
        try:
            canonical = canonical_sid(self.name, self.schema, params)
        except ValueError:
            return
        if canonical != sid and sid not in self.noncanonical:
            self.noncanonical[sid] = canonical
            log.warning(
                "%s/%s from %s is not the canonical sid of its params (%s): rewrite its unitop to read it once",
                self.name,
                sid,
                requester,
                canonical,
            )

    def forget(self, now: float, older_than_s: float, keep: set[str]) -> None:
        """Forget demand lapsed longer than `older_than_s` ago (but the sids in `keep`), and expired rejections."""
        self.tracker.forget_lapsed(now, older_than_s, keep=keep)
        for sid in [s for s, (_, exp) in self.rejected.items() if exp <= now]:
            del self.rejected[sid]
        for sid in [s for s in self.noncanonical if not self.tracker.knows(s)]:
            del self.noncanonical[sid]

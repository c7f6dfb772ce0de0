"""Refused samples of one source: every one counted (`samples_dropped{source, reason}`), logged at most once per
interval per reason with how many the line stands for, so a source that sends garbage cannot flood the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from tributary_common.ratelog import LogThrottle

from .admission import Refusal
from .metrics import IngestMetrics

log = logging.getLogger(__name__)

# Refusals that are the normal work of the pipeline: counted, not logged (re-reading a file repeats old rows).
QUIET = frozenset({"not_increasing"})


class RefusalLog:
    def __init__(self, source: str, metrics: IngestMetrics, interval_s: float, clock: Callable[[], float]) -> None:
        self.source = source
        self.metrics = metrics
        self._counters: dict[str, Any] = {}
        self._throttle = LogThrottle(interval_s, clock)

    def refused(self, sid: str, refusal: Refusal) -> None:
        reason = refusal.reason
        counter = self._counters.get(reason)
        if counter is None:
            counter = self._counters[reason] = self.metrics.dropped.labels(self.source, reason)
        counter.inc()
        if reason in QUIET:
            return
        n = self._throttle.hit(reason)
        if n is None:
            return
        log.warning(
            "%s: refused %d sample(s) (%s) since the last such line; latest of %s: %s",
            self.source,
            n,
            reason,
            sid,
            refusal.detail or reason,
        )

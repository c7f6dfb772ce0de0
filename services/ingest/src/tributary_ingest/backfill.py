"""Backfill of a (re)started read: the history since the sid's watermark, then the live samples held meanwhile."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from tributary_common.timeutil import utcnow

from .metrics import IngestMetrics
from .owned import Owned
from .sdk import Connector, Refused
from .settings import IngestSettings

log = logging.getLogger(__name__)


class Backfill:
    def __init__(
        self,
        name: str,
        connector: Connector[Any],
        settings: IngestSettings,
        metrics: IngestMetrics,
        holds: Callable[[str, Owned], bool],
    ) -> None:
        self.name = name
        self.connector = connector
        self.settings = settings
        self.metrics = metrics
        self._holds = holds  # whether `entry` is still the read of `sid` (not lost or released meanwhile)

    def since(self, entry: Owned) -> datetime | None:
        """Where a (re)started read resumes: the watermark, no further back than `backfill_max_s`; None when the
        connector keeps no history or there is nothing to resume from."""
        last = entry.pipeline.last_t
        if last is None or self.settings.backfill_max_s <= 0 or not type(self.connector).has_history():
            return None
        return max(last, utcnow() - timedelta(seconds=self.settings.backfill_max_s))

    async def run(self, sid: str, entry: Owned, since: datetime) -> None:
        """Read the history from the watermark to now, then the live samples held meanwhile: those not after the
        last historical one are dropped by the pipeline, so the seam has neither a gap nor a duplicate."""
        until = utcnow()
        count = 0
        try:
            async with asyncio.timeout(self.settings.backfill_timeout_s):
                async for t, v, q in self.connector.history(sid, entry.params, since, until):
                    if not self._holds(sid, entry) or entry.state != "running":
                        return  # failed, lost or released meanwhile: the next read backfills again
                    entry.pipeline.add(t, v, q)
                    count += 1
                    await entry.pipeline.room()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - no history is no reason to stop the live read
            self.metrics.errors.labels(self.name, "refused" if isinstance(exc, Refused) else "backfill").inc()
            log.warning("backfill of %s/%s from %s failed: %s: %s", self.name, sid, since, type(exc).__name__, exc)
        finally:
            held, entry.held = entry.held or [], None
            if self._holds(sid, entry):
                for row in held:
                    entry.pipeline.add(*row)
        log.info("backfilled %d samples of %s/%s since %s", count, self.name, sid, since)

"""Renewal of one source's held leases. It runs on the lease thread's loop, never waiting for the (possibly busy)
main loop; a lease it cannot renew is handed back to the main loop, which stops that read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from .leases import Leases
from .owned import Owned

log = logging.getLogger(__name__)

# Leases renewed per round (a `gets` of all of them, then their `cas` commands in one write): a failed round
# stops these reads, not all of them.
LEASES_PER_ROUND = 100


class LeaseRenewal:
    def __init__(
        self,
        name: str,
        owned: dict[str, Owned],
        leases: Leases,
        interval_s: float,
        on_lost: Callable[[str, Owned], None],
        main_loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.name = name
        self.owned = owned
        self.leases = leases
        self.interval_s = interval_s
        self._on_lost = on_lost  # called on `main_loop`
        self._main_loop = main_loop

    async def forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.renew()
            except Exception:
                log.exception("renewing leases of %s failed", self.name)

    async def renew(self) -> None:
        """One pass over the held leases (on the lease loop); a lease that cannot be renewed stops its read."""
        # list() of a dict of str keys runs without releasing the GIL: a consistent snapshot across threads.
        snapshot = list(self.owned.items())
        for i in range(0, len(snapshot), LEASES_PER_ROUND):
            await self._renew(snapshot[i : i + LEASES_PER_ROUND])

    async def _renew(self, held: list[tuple[str, Owned]]) -> None:
        try:
            # Past the interval the next pass is due and the lease's TTL running out: it cannot be proven held.
            async with asyncio.timeout(self.interval_s):
                renewed = await self.leases.renew_many([sid for sid, _ in held])
        except Exception as exc:  # noqa: BLE001 - cannot prove we hold them: stop their reads
            log.warning("renewing %d leases of %s failed: %r", len(held), self.name, exc)
            renewed = set()
        marks: dict[str, tuple[Owned, datetime]] = {}
        for sid, entry in held:
            if sid not in renewed:
                self._main_loop.call_soon_threadsafe(self._on_lost, sid, entry)
                continue
            wm = entry.pipeline.published_t
            if wm is not None and wm != entry.wm_written:
                marks[sid] = (entry, wm)
        if marks:
            with contextlib.suppress(Exception):  # written again on the next pass
                async with asyncio.timeout(self.interval_s):
                    written = await self.leases.set_watermarks({sid: wm for sid, (_, wm) in marks.items()})
                for sid in written:
                    entry, wm = marks[sid]
                    entry.wm_written = wm

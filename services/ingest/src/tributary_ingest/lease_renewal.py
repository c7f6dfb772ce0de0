"""Renewal of one source's held leases. It runs on the lease thread's loop, never waiting for the (possibly busy)
main loop; a lease it cannot renew is handed back to the main loop, which stops that read."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

from .leases import Leases
from .owned import Owned

log = logging.getLogger(__name__)

RENEWALS_AT_ONCE = 32


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

        async def one(sid: str, entry: Owned) -> None:
            try:
                ok = await self.leases.renew(sid)
            except Exception as exc:  # noqa: BLE001 - cannot prove we hold it: stop
                log.warning("renewing the lease of %s/%s failed: %s", self.name, sid, exc)
                ok = False
            if not ok:
                self._main_loop.call_soon_threadsafe(self._on_lost, sid, entry)
                return
            wm = entry.pipeline.published_t
            if wm is not None and wm != entry.wm_written:
                with contextlib.suppress(Exception):
                    await self.leases.set_watermark(sid, wm)
                    entry.wm_written = wm

        async def worker(held: Iterator[tuple[str, Owned]]) -> None:
            for sid, entry in held:  # the iterator is shared: each lease is renewed by one worker
                await one(sid, entry)

        # list() of a dict of str keys runs without releasing the GIL: a consistent snapshot across threads.
        snapshot = list(self.owned.items())
        # At most RENEWALS_AT_ONCE in flight, from as many tasks (not a task per lease: the lease thread shares the
        # GIL with the main loop, and a thousand tasks every few seconds cost it samples).
        held = iter(snapshot)
        await asyncio.gather(*(worker(held) for _ in range(min(RENEWALS_AT_ONCE, len(snapshot)))))

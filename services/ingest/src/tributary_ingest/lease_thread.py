"""Lease I/O on an event loop of its own, in a thread.

A lease must be renewed on time whatever the load: when connectors keep the main event loop busy with samples,
each Memcached round trip there waits for a whole turn of that loop, and a thousand renewals would take longer
than the lease lives. Here they wait only for the GIL. The main loop hands coroutines over with `run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from tributary_common.cache import Cache

T = TypeVar("T")


class LeaseThread:
    def __init__(self, host: str, port: int, namespace: str, pool_size: int) -> None:
        self._args = (host, port, namespace, pool_size)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="ingest-leases", daemon=True)
        self._cache: Cache | None = None

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    async def start(self) -> None:
        self._thread.start()
        host, port, namespace, pool_size = self._args

        async def open_cache() -> Cache:
            return Cache(host, port, namespace, pool_size=pool_size)

        self._cache = await self.run(open_cache())

    @property
    def cache(self) -> Cache:
        assert self._cache is not None, "LeaseThread.start() first"
        return self._cache

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the lease loop and wait for it from the calling loop."""
        return await asyncio.wrap_future(self.submit(coro))

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    async def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._cache is not None:
            with contextlib.suppress(Exception):  # closing a broken connection at shutdown
                await self.run(self._cache.close())

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        await self.run(cancel_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join, 10)

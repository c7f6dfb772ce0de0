"""A task that runs `beat()` every `interval_s`, at once when poked, until stopped (demand heartbeats, source
announcements, reconcile loops, queue-depth polls).

    loop = Heartbeat(send_demands, interval_s=5.0, name="demand heartbeat")
    loop.start()
    loop.poke()          # something changed: beat now rather than at the next tick
    await loop.stop()

A beat that raises is logged and the loop goes on (the next beat retries). A poke during a beat makes one more
beat right after it, so no change is missed. `first_at_once=False` waits one interval (or a poke) before the
first beat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .tasks import cancel_and_wait

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(
        self,
        beat: Callable[[], Awaitable[Any]],
        *,
        interval_s: float,
        name: str,
        first_at_once: bool = True,
        traceback: bool = False,
    ) -> None:
        self.beat = beat
        self.interval_s = interval_s
        self.name = name
        self.first_at_once = first_at_once
        self.traceback = traceback  # log a failed beat with its traceback (else one line)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    def poke(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        """Cancel the loop (a beat in progress too). Idempotent."""
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        if not self.first_at_once:
            await self._wait()
        while True:
            try:
                await self.beat()
            except Exception as exc:  # the next beat retries
                log.warning("%s failed: %s", self.name, exc, exc_info=self.traceback)
            await self._wait()

    async def _wait(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self.interval_s)
        self._wake.clear()

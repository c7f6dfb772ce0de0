"""Exponential backoff with "equal jitter": the n-th delay lies in [d/2, d], d = min * 2^n capped at max.

Half of each delay is random (so instances that failed together do not retry together), and delays never
shrink while failures continue (so a broken dependency is not hammered). `jitter=False` gives the plain
doubling min, 2 min, 4 min ... capped at max (what the hub and the stream retry with).

    backoff = Backoff(0.2, 5.0)
    while True:
        try:
            return await connect()
        except ConnectionError:
            await backoff.sleep()
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None, *, jitter: bool = True) -> None:
        self.min_s = min_s
        self.max_s = max_s
        self.jitter = jitter
        self.failures = 0
        self._rng = rng or random.Random()

    def ceiling(self, failures: int) -> float:
        """The upper bound of the delay after `failures` consecutive failures (1 for the first)."""
        return float(min(self.max_s, self.min_s * 2 ** min(max(0, failures - 1), 64)))

    def next_delay(self) -> float:
        self.failures += 1
        d = self.ceiling(self.failures)
        if not self.jitter:
            return d
        return d / 2 + self._rng.uniform(0, d / 2)

    async def sleep(self) -> float:
        """Wait the next delay; return it (for the log line)."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self.failures = 0

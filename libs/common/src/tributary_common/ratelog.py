"""Rate-limited logging per key: a condition that repeats (a refused sample, a dead letter) is logged at most once
per interval per key, and each line says how many occurrences it stands for, so a flood of bad input costs a
bounded number of lines and loses no count.

    throttle = LogThrottle(interval_s=30)
    throttle.log(log, logging.ERROR, reason, "dead-lettered a message (%s): %s", reason, detail)
    # -> "dead-lettered a message (undecodable): ... [1 like this since the last such line]", then silence for
    #    this key until 30 s have passed; the next line counts everything kept quiet meanwhile.

`hit(key)` is the decision alone (None: stay quiet; else the count the caller's own line stands for).
Occurrences kept quiet are reported by the next line of their key; a key that never recurs keeps its count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from typing import Any


class LogThrottle:
    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic, *, max_keys: int = 1024) -> None:
        self.interval_s = interval_s
        self._clock = clock
        # Bounded: hostile input choosing keys cannot grow it without end (the oldest keys are forgotten).
        self.max_keys = max_keys
        self._logged_at: dict[Hashable, float] = {}
        self._quiet: dict[Hashable, int] = {}

    def hit(self, key: Hashable) -> int | None:
        """One occurrence of `key`: None to stay quiet, else log now, standing for this many occurrences."""
        n = self._quiet.get(key, 0) + 1
        now = self._clock()
        last = self._logged_at.get(key)
        if last is not None and now - last < self.interval_s:
            self._quiet[key] = n
            return None
        if last is None and len(self._logged_at) >= self.max_keys:
            oldest = next(iter(self._logged_at))
            self._logged_at.pop(oldest)
            self._quiet.pop(oldest, None)
        self._logged_at.pop(key, None)  # re-inserted last: the dict stays ordered oldest line first
        self._logged_at[key] = now
        self._quiet[key] = 0
        return n

    def log(self, logger: logging.Logger, level: int, key: Hashable, msg: str, *args: Any) -> bool:
        """`logger.log(level, msg, *args)` with the count appended, when `hit(key)` allows; whether it logged."""
        n = self.hit(key)
        if n is None:
            return False
        logger.log(level, msg + " [%d like this since the last such line]", *args, n)
        return True

"""A small in-process memory of recent answers: entries are fresh for `ttl_s`, and the whole memory empties itself
when it grows past `max_entries` (cheaper than LRU bookkeeping on hot paths, and bounded whatever callers send).

    recent: TtlCache[str, TopicRef] = TtlCache(ttl_s=2.0)
    hit = recent.get(name)
    if hit is not None:
        return hit.value                       # may be None when None was stored: a hit all the same
    ref = await resolve(name)
    recent.put(name, ref)

`ttl_s=0` remembers nothing (every `get` misses). `put(key, value, expires=t)` stores an entry that is fresh
until clock time `t` instead (a verified token until its `exp`, with `clock=time.time`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Hit(NamedTuple, Generic[V]):
    value: V
    expires: float  # clock time after which the entry is stale


class TtlCache(Generic[K, V]):
    def __init__(self, ttl_s: float, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[K, Hit[V]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> Hit[V] | None:
        """The fresh entry for `key`, else None."""
        hit = self._entries.get(key)
        if hit is None or self._clock() >= hit.expires:
            return None
        return hit

    def put(self, key: K, value: V, *, expires: float | None = None) -> None:
        if len(self._entries) >= self.max_entries and key not in self._entries:
            self._entries.clear()
        self._entries[key] = Hit(value, self._clock() + self.ttl_s if expires is None else expires)

    async def fetch(self, key: K, load: Callable[[], Awaitable[V]]) -> V:
        """The fresh value, else `load()`'s (remembered; an exception is not)."""
        hit = self.get(key)
        if hit is not None:
            return hit.value
        value = await load()
        self.put(key, value)
        return value

    def forget(self, key: K) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

"""Memcached, safely: namespaced and versioned keys, bytes in and out, limits checked before the server sees them.

Keys are built as `<namespace>:<version>:<key>`; one that would be over 250 bytes, or that contains a space or
control character, is replaced by a SHA-256 digest, so callers may use any text (unicode included) as a key.
The `*_many` methods send many commands per round trip (`memcached_pipeline`), on a connection of their own.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import aiomcache
import orjson

from .memcached_pipeline import Pipeline

MAX_KEY_BYTES = 250
MAX_VALUE_BYTES = 1024 * 1024 - 1024  # memcached's default item size, less room for its header
MAX_RELATIVE_TTL = 30 * 24 * 3600  # above this memcached reads the TTL as a Unix timestamp


class CacheValueTooLarge(ValueError):
    pass


class Cache:
    def __init__(self, host: str, port: int, namespace: str, *, version: int = 1, pool_size: int = 8) -> None:
        self._client = aiomcache.Client(host, port, pool_size=pool_size)
        self._pipeline = Pipeline(host, port)
        self._prefix = f"{namespace}:{version}:"

    def key(self, key: str) -> bytes:
        """The bytes sent to memcached for `key`."""
        raw = (self._prefix + key).encode()
        if len(raw) > MAX_KEY_BYTES or any(b <= 32 or b == 127 for b in raw):
            digest = base64.b32encode(hashlib.sha256(key.encode()).digest()).decode().rstrip("=")
            raw = f"{self._prefix}h:{digest}".encode()
        return raw

    @staticmethod
    def _ttl(ttl: float) -> int:
        if ttl < 0:
            raise ValueError("ttl must be >= 0")
        if ttl > MAX_RELATIVE_TTL:
            raise ValueError(f"ttl above {MAX_RELATIVE_TTL} s would be read as an absolute time")
        # 0 means "never expires" to memcached: round sub-second TTLs up.
        return int(ttl) if ttl == int(ttl) else int(ttl) + 1

    @staticmethod
    def _check(value: bytes) -> bytes:
        if len(value) > MAX_VALUE_BYTES:
            raise CacheValueTooLarge(f"value of {len(value)} bytes is over the {MAX_VALUE_BYTES} byte limit")
        return value

    async def get(self, key: str) -> bytes | None:
        value: bytes | None = await self._client.get(self.key(key))
        return value

    async def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        if not keys:
            return {}
        values = await self._client.multi_get(*(self.key(k) for k in keys))
        return {k: v for k, v in zip(keys, values, strict=True) if v is not None}

    async def set(self, key: str, value: bytes, ttl: float = 0) -> None:
        await self._client.set(self.key(key), self._check(value), exptime=self._ttl(ttl))

    async def add(self, key: str, value: bytes, ttl: float = 0) -> bool:
        """Store only if absent; True when this call stored it (the basis of leases)."""
        return bool(await self._client.add(self.key(key), self._check(value), exptime=self._ttl(ttl)))

    async def gets(self, key: str) -> tuple[bytes | None, int | None]:
        """The value and its CAS token."""
        value, token = await self._client.gets(self.key(key))
        return value, token

    async def cas(self, key: str, value: bytes, token: int, ttl: float = 0) -> bool:
        """Replace only if nobody changed it since `gets`; False when somebody did (or it expired)."""
        return bool(await self._client.cas(self.key(key), self._check(value), token, exptime=self._ttl(ttl)))

    async def gets_many(self, keys: Sequence[str]) -> dict[str, tuple[bytes, int]]:
        """The value and CAS token of each of `keys` the server holds, one round trip per 100 keys."""
        sent = {self.key(k): k for k in keys}
        return {sent[raw]: found for raw, found in (await self._pipeline.gets_many(list(sent))).items()}

    async def cas_many(self, items: Sequence[tuple[str, bytes, int]], ttl: float = 0) -> list[bool]:
        """`cas` for each (key, value, token), one round trip per 100: True where it was stored."""
        raw = [(self.key(k), self._check(v), token) for k, v, token in items]
        return await self._pipeline.cas_many(raw, self._ttl(ttl))

    async def set_many(self, items: Mapping[str, bytes], ttl: float = 0) -> list[bool]:
        """`set` for each key (in the mapping's order), one round trip per 100: True where it was stored."""
        raw = [(self.key(k), self._check(v)) for k, v in items.items()]
        return await self._pipeline.set_many(raw, self._ttl(ttl))

    async def delete(self, key: str) -> bool:
        return bool(await self._client.delete(self.key(key)))

    async def touch(self, key: str, ttl: float) -> bool:
        return bool(await self._client.touch(self.key(key), self._ttl(ttl)))

    async def get_json(self, key: str) -> Any:
        raw = await self.get(key)
        return None if raw is None else orjson.loads(raw)

    async def set_json(self, key: str, value: Any, ttl: float = 0) -> None:
        await self.set(key, orjson.dumps(value), ttl)

    async def ping(self) -> None:
        await self._client.version()

    async def close(self) -> None:
        await self._client.close()
        await self._pipeline.close()

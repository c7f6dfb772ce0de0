"""The Memcached wrapper against the real memcached."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.support import platform
from tributary_common.cache import MAX_KEY_BYTES, Cache, CacheValueTooLarge


@pytest.fixture
async def cache(services: None, cache_namespace: str) -> AsyncIterator[Cache]:
    c = Cache("127.0.0.1", platform.MEMCACHED_PORT, cache_namespace)
    yield c
    await c.close()


async def test_set_get_add_delete(cache: Cache) -> None:
    assert await cache.get("k") is None
    await cache.set("k", b"v1")
    assert await cache.get("k") == b"v1"
    assert await cache.add("k", b"v2") is False  # add refuses an existing key
    assert await cache.get("k") == b"v1"
    assert await cache.delete("k") is True
    assert await cache.add("k", b"v3") is True
    assert await cache.get_many(["k", "missing"]) == {"k": b"v3"}


async def test_cas(cache: Cache) -> None:
    await cache.set("lease", b"me")
    value, token = await cache.gets("lease")
    assert value == b"me" and token is not None
    assert await cache.cas("lease", b"me-again", token) is True
    assert await cache.cas("lease", b"stale", token) is False  # the token is spent
    assert await cache.get("lease") == b"me-again"


async def test_expiry(cache: Cache) -> None:
    # memcached's clock ticks whole seconds: a TTL of 1 s can end a few milliseconds after the set; 2 s lives 1-2 s.
    await cache.set("short", b"x", ttl=2)
    assert await cache.get("short") == b"x"
    await asyncio.sleep(3.1)
    assert await cache.get("short") is None


async def test_unicode_keys_near_limit(cache: Cache) -> None:
    # 120 three-byte characters: 120 characters (under 250) but 360 bytes (over the server's limit).
    long_unicode = "温" * 120
    near = "k" * (MAX_KEY_BYTES - len(cache.key("")))
    other = "温" * 119 + "度"
    for key in (long_unicode, near, "with space", "tab\tkey", other):
        raw = cache.key(key)
        assert len(raw) <= MAX_KEY_BYTES and b" " not in raw
        await cache.set(key, key.encode())
    for key in (long_unicode, near, "with space", "tab\tkey", other):
        assert await cache.get(key) == key.encode()


async def test_namespaces_do_not_collide(cache: Cache, cache_namespace: str) -> None:
    other = Cache("127.0.0.1", platform.MEMCACHED_PORT, cache_namespace, version=2)
    try:
        await cache.set("k", b"v1")
        assert await other.get("k") is None
    finally:
        await other.close()


async def test_value_too_large_is_refused_before_sending(cache: Cache) -> None:
    with pytest.raises(CacheValueTooLarge):
        await cache.set("big", b"x" * (1024 * 1024))

"""The Memcached wrapper against the real memcached."""

from __future__ import annotations

import asyncio

import pytest

from tests.support import platform
from tributary_common.cache import MAX_KEY_BYTES, Cache, CacheValueTooLarge


async def test_set_get_add_delete(memcached: Cache) -> None:
    assert await memcached.get("k") is None
    await memcached.set("k", b"v1")
    assert await memcached.get("k") == b"v1"
    assert await memcached.add("k", b"v2") is False  # add refuses an existing key
    assert await memcached.get("k") == b"v1"
    assert await memcached.delete("k") is True
    assert await memcached.add("k", b"v3") is True
    assert await memcached.get_many(["k", "missing"]) == {"k": b"v3"}


async def test_cas(memcached: Cache) -> None:
    await memcached.set("lease", b"me")
    value, token = await memcached.gets("lease")
    assert value == b"me" and token is not None
    assert await memcached.cas("lease", b"me-again", token) is True
    assert await memcached.cas("lease", b"stale", token) is False  # the token is spent
    assert await memcached.get("lease") == b"me-again"


async def test_expiry(memcached: Cache) -> None:
    # memcached's clock ticks whole seconds: a TTL of 1 s can end a few milliseconds after the set; 2 s lives 1-2 s.
    await memcached.set("short", b"x", ttl=2)
    assert await memcached.get("short") == b"x"
    await asyncio.sleep(3.1)
    assert await memcached.get("short") is None


async def test_unicode_keys_near_limit(memcached: Cache) -> None:
    # 120 three-byte characters: 120 characters (under 250) but 360 bytes (over the server's limit).
    long_unicode = "温" * 120
    near = "k" * (MAX_KEY_BYTES - len(memcached.key("")))
    other = "温" * 119 + "度"
    for key in (long_unicode, near, "with space", "tab\tkey", other):
        raw = memcached.key(key)
        assert len(raw) <= MAX_KEY_BYTES and b" " not in raw
        await memcached.set(key, key.encode())
    for key in (long_unicode, near, "with space", "tab\tkey", other):
        assert await memcached.get(key) == key.encode()


async def test_namespaces_do_not_collide(memcached: Cache, cache_namespace: str) -> None:
    other = Cache("127.0.0.1", platform.MEMCACHED_PORT, cache_namespace, version=2)
    try:
        await memcached.set("k", b"v1")
        assert await other.get("k") is None
    finally:
        await other.close()


async def test_value_too_large_is_refused_before_sending(memcached: Cache) -> None:
    with pytest.raises(CacheValueTooLarge):
        await memcached.set("big", b"x" * (1024 * 1024))

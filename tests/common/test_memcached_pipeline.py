"""Many Memcached commands per round trip (`Cache.gets_many`, `cas_many`, `set_many`), against the real memcached;
a loopback server that answers wrongly or not at all stands in for a broken one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tests.support import platform
from tributary_common.cache import Cache, CacheValueTooLarge
from tributary_common.memcached_pipeline import COMMANDS_PER_TRIP, MemcachedError, Pipeline


async def test_gets_many_over_several_round_trips_leaves_out_absent_keys(memcached: Cache) -> None:
    keys = [f"k{i}" for i in range(COMMANDS_PER_TRIP * 2 + 50)]
    for k in keys[::2]:
        await memcached.set(k, k.encode())
    found = await memcached.gets_many([*keys, "k0"])  # a repeated key is asked once
    assert set(found) == set(keys[::2])
    for k, (value, token) in found.items():
        assert value == k.encode()
        assert (await memcached.gets(k)) == (value, token)


async def test_cas_many_stores_only_where_the_token_is_current(memcached: Cache) -> None:
    keys = [f"lease{i}" for i in range(COMMANDS_PER_TRIP + 20)]
    for k in keys:
        await memcached.set(k, b"me")
    tokens = await memcached.gets_many(keys)
    await memcached.set(keys[3], b"someone else")  # changed after our gets
    await memcached.delete(keys[110])  # gone
    stored = await memcached.cas_many([(k, b"me", tokens[k][1]) for k in keys], ttl=60)
    assert [i for i, ok in enumerate(stored) if not ok] == [3, 110]
    assert await memcached.get(keys[3]) == b"someone else"
    assert await memcached.get(keys[110]) is None
    after = await memcached.gets_many(keys)
    assert all(after[k][1] != tokens[k][1] for i, k in enumerate(keys) if i not in (3, 110))  # renewed
    assert await memcached.cas_many([(keys[0], b"stale", tokens[keys[0]][1])]) == [False]  # a spent token


async def test_set_many_stores_each_with_its_ttl(memcached: Cache) -> None:
    items = {f"wm{i}": f"2026-01-01T00:00:{i % 60:02d}Z".encode() for i in range(150)}
    # memcached's clock ticks whole seconds: a TTL of 2 s lives 1-2 s, long enough to be read back.
    assert await memcached.set_many(items, ttl=2) == [True] * 150
    assert await memcached.get_many(list(items)) == items
    await asyncio.sleep(3.1)
    assert await memcached.get_many(list(items)) == {}


async def test_hostile_keys_and_values(memcached: Cache) -> None:
    # Through `Cache` any text is a key (unsafe ones hashed): a line break cannot start a second command.
    keys = ["with space", "line\r\nflush_all", "温度" * 100, "k" * 400]
    assert await memcached.set_many(dict.fromkeys(keys, b"v")) == [True] * 4
    assert {k: v for k, (v, _) in (await memcached.gets_many(keys)).items()} == dict.fromkeys(keys, b"v")
    with pytest.raises(CacheValueTooLarge):
        await memcached.set_many({"big": b"x" * (1024 * 1024)})
    # Raw keys a caller might pass to the pipeline itself are refused before anything is sent.
    pipeline = Pipeline("127.0.0.1", platform.MEMCACHED_PORT)
    try:
        for bad in (b"a b", b"x\r\nflush_all", b"", b"k" * 251, b"tab\tkey", b"\x7f"):
            with pytest.raises(ValueError, match="not a memcached key"):
                await pipeline.gets_many([bad])
            with pytest.raises(ValueError, match="not a memcached key"):
                await pipeline.set_many([(bad, b"v")], 0)
    finally:
        await pipeline.close()
    assert await memcached.get("with space") == b"v"  # nothing was flushed


Reply = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(reply: Reply) -> tuple[asyncio.Server, int, list[int]]:
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await reply(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], connections


async def _answer(writer: asyncio.StreamWriter, reader: asyncio.StreamReader, text: bytes) -> None:
    await reader.readline()
    writer.write(text)
    await writer.drain()  # and closes: a reply cut short ends at the connection's end


@pytest.mark.parametrize(
    "reply",
    [
        b"VALUE k 0 5 1\r\nab",  # cut mid-value
        b"VALUE other 0 1 1\r\nx\r\nEND\r\n",  # a key not asked for
        b"VALUE k 0 1 1\r\nx\r\nVALUE k 0 1 1\r\nx\r\nEND\r\n",  # twice
        b"VALUE k 0 99999999999 1\r\n",  # a length past any value
        b"VALUE k 0 1 notanumber\r\nx\r\nEND\r\n",
        b"VALUE k 0 1 1\r\nxyz\r\nEND\r\n",  # the value longer than announced
        b"SERVER_ERROR out of memory\r\n",
        b"x" * 70_000 + b"\r\n",  # a line past the reader's limit
    ],
)
async def test_a_wrong_answer_is_an_error_and_the_next_call_reconnects(reply: bytes) -> None:
    server, port, connections = await _serve(lambda r, w: _answer(w, r, reply))
    pipeline = Pipeline("127.0.0.1", port, timeout_s=1.0)
    try:
        for attempt in (1, 2):
            with pytest.raises(MemcachedError):
                await pipeline.gets_many([b"k"])
            assert len(connections) == attempt
    finally:
        await pipeline.close()
        server.close()


async def test_a_storage_reply_out_of_protocol_is_an_error() -> None:
    server, port, _ = await _serve(lambda r, w: _answer(w, r, b"STORED\r\nERROR\r\n"))
    pipeline = Pipeline("127.0.0.1", port, timeout_s=1.0)
    try:
        with pytest.raises(MemcachedError, match="storage command"):
            await pipeline.cas_many([(b"a", b"v", 1), (b"b", b"v", 2)], 10)
    finally:
        await pipeline.close()
        server.close()


async def test_a_silent_server_times_out_instead_of_hanging() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    server, port, _ = await _serve(silent)
    pipeline = Pipeline("127.0.0.1", port, timeout_s=0.3)
    try:
        with pytest.raises(TimeoutError):  # (the server answers nothing for 5 s)
            await pipeline.cas_many([(b"a", b"v", 1)], 10)
    finally:
        await pipeline.close()
        server.close()

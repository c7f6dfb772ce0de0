"""Many Memcached commands per round trip: one `gets` for many keys, and `cas` or `set` commands written together
with their replies read back in order (the text protocol answers a connection's commands in the order sent).

aiomcache sends a command and waits for its reply before the next. Renewing a thousand leases that way was three
thousand round trips every few seconds, 5-9 % of a busy ingest process's CPU (bench/README.md, Ingest, fifth pass).

One connection, one operation on it at a time. Any error or timeout closes it (what the server would answer next is
unknown) and the next operation opens a new one. Keys are raw bytes as `Cache.key` makes them; they are checked
again here, since a space or line break in one would be read by the server as the start of another command.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

# Commands written before their replies are read: bounds what one round trip buffers on either side.
COMMANDS_PER_TRIP = 100
MAX_KEY_BYTES = 250
MAX_VALUE_BYTES = 1024 * 1024
_UNSAFE_KEY = re.compile(rb"[\x00-\x20\x7f]")
_STORED, _EXISTS, _NOT_FOUND, _NOT_STORED, _END = (
    b"STORED\r\n",
    b"EXISTS\r\n",
    b"NOT_FOUND\r\n",
    b"NOT_STORED\r\n",
    b"END\r\n",
)


T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")


class MemcachedError(Exception):
    """The server answered something the protocol does not allow here, or did not answer in time."""


def _checked(key: bytes) -> bytes:
    if not key or len(key) > MAX_KEY_BYTES or _UNSAFE_KEY.search(key):
        raise ValueError(f"not a memcached key: {key[:60]!r}")
    return key


def _chunks(items: Sequence[T]) -> list[Sequence[T]]:
    return [items[i : i + COMMANDS_PER_TRIP] for i in range(0, len(items), COMMANDS_PER_TRIP)]


class Pipeline:
    def __init__(self, host: str, port: int, *, timeout_s: float = 2.0) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock = asyncio.Lock()

    async def gets_many(self, keys: Sequence[bytes]) -> dict[bytes, tuple[bytes, int]]:
        """Value and CAS token of each key the server holds (absent keys are left out)."""
        found: dict[bytes, tuple[bytes, int]] = {}
        for chunk in _chunks(list(dict.fromkeys(_checked(k) for k in keys))):
            found.update(await self._trip(b"gets " + b" ".join(chunk) + b"\r\n", self._read_values, set(chunk)))
        return found

    async def cas_many(self, items: Sequence[tuple[bytes, bytes, int]], exptime: int) -> list[bool]:
        """For each (key, value, token): stored (True), or changed or gone since the token was read (False)."""
        out: list[bool] = []
        for chunk in _chunks(items):
            commands = b"".join(
                b"cas %s 0 %d %d %d\r\n%s\r\n" % (_checked(k), exptime, len(v), token, v) for k, v, token in chunk
            )
            out += await self._trip(commands, self._read_outcomes, len(chunk))
        return out

    async def set_many(self, items: Sequence[tuple[bytes, bytes]], exptime: int) -> list[bool]:
        """Store each (key, value); False where the server declined one (NOT_STORED)."""
        out: list[bool] = []
        for chunk in _chunks(items):
            commands = b"".join(b"set %s 0 %d %d\r\n%s\r\n" % (_checked(k), exptime, len(v), v) for k, v in chunk)
            out += await self._trip(commands, self._read_outcomes, len(chunk))
        return out

    async def close(self) -> None:
        async with self._lock:
            await self._drop()

    async def _trip(self, commands: bytes, read: Callable[[asyncio.StreamReader, A], Awaitable[R]], arg: A) -> R:
        async with self._lock:
            try:
                async with asyncio.timeout(self._timeout_s):
                    if self._conn is None:
                        self._conn = await asyncio.open_connection(self._host, self._port)
                    reader, writer = self._conn
                    writer.write(commands)  # not drained first: the replies are read while it is sent
                    return await read(reader, arg)
            except BaseException:
                await self._drop()
                raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn[1].close()

    @staticmethod
    async def _read_values(reader: asyncio.StreamReader, asked: set[bytes]) -> dict[bytes, tuple[bytes, int]]:
        # VALUE <key> <flags> <bytes> <cas unique>\r\n<data>\r\n ... END\r\n
        found: dict[bytes, tuple[bytes, int]] = {}
        while (line := await _line(reader)) != _END:
            terms = line.split()
            if len(terms) != 5 or terms[0] != b"VALUE" or terms[1] not in asked or terms[1] in found:
                raise MemcachedError(f"unexpected reply to gets: {line[:80]!r}")
            try:
                length, token = int(terms[3]), int(terms[4])
            except ValueError:
                raise MemcachedError(f"unexpected reply to gets: {line[:80]!r}") from None
            if not 0 <= length <= MAX_VALUE_BYTES:
                raise MemcachedError(f"a value of {length} bytes")
            try:
                data = await reader.readexactly(length + 2)
            except asyncio.IncompleteReadError:
                raise MemcachedError("the connection closed mid-reply") from None
            if data[-2:] != b"\r\n":
                raise MemcachedError("a value not followed by CRLF")
            found[terms[1]] = (data[:-2], token)
        return found

    @staticmethod
    async def _read_outcomes(reader: asyncio.StreamReader, n: int) -> list[bool]:
        out = []
        for _ in range(n):
            line = await _line(reader)
            if line == _STORED:
                out.append(True)
            elif line in (_EXISTS, _NOT_FOUND, _NOT_STORED):
                out.append(False)
            else:
                raise MemcachedError(f"unexpected reply to a storage command: {line[:80]!r}")
        return out


async def _line(reader: asyncio.StreamReader) -> bytes:
    try:
        line = await reader.readline()
    except ValueError:  # over the reader's limit (64 KiB): no reply of ours is that long
        raise MemcachedError("a reply line over 64 KiB") from None
    if not line.endswith(b"\r\n"):
        raise MemcachedError("the connection closed mid-reply")
    return line

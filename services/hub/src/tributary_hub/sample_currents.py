"""Each sid's current value (its newest sample) on FerretDB's layouts: gathered in `SHARDS` documents.

MongoDB (`indexed`) keeps one document per sid in `sample_current`, moved forward by an atomic conditional update
(`sample_writes.set_current`). FerretDB passes over every document of a collection for a conditional update, so
there one update per sid cost 11-17 ms at 1,000 sids and more with every sid added: a batch of 1,000 sids spent
11-14 s on its current values. Here a sid's value is an entry (keyed by a digest of the sid) of one of 64 shards,
and a batch writes each shard it changes once.

A shard is written as a new version, never updated: `_id` `<shard>.<version>`, inserted over the newest version read,
which FerretDB's unique `_id` lets one writer do (its conditional update is a find then a write: another process's
write could land over ours unseen). The loser reads again and merges, so an entry only ever moves forward, then the
version replaced is deleted; a reader takes each shard's newest version. A value too long to copy into a shard (a
long text) is left in its bucket and read from there at its time.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

from .series import Point

SHARDS = 64
ALL_SHARDS = [f"{n:02d}" for n in range(SHARDS)]  # their names
INLINE_MAX = 256  # characters of a text value or quality copied into its shard; longer ones stay in their bucket
PROJECTED_MAX = 200  # entries named in a read's projection; more read the shards whole

Entry = dict[str, Any]  # {"s": sid, "t": µs, "v": value, "q": quality}, or "b": 1 instead of "v" (in the bucket)
Change = Callable[[dict[str, Entry]], dict[str, Entry] | None]  # a shard's entries -> the new ones, or None: as is
AtOrBefore = Callable[[str, int], Awaitable[Point | None]]


def entry_key(sid: str) -> str:
    """A field name for any sid (a sid may hold dots, which a field path cannot)."""
    return hashlib.sha256(sid.encode()).hexdigest()[:32]


def shard_of(key: str) -> str:
    return ALL_SHARDS[int(key[:8], 16) % SHARDS]


def _entry(sid: str, p: Point) -> Entry:
    long = any(isinstance(x, str) and len(x) > INLINE_MAX for x in (p.v, p.q))
    return {"s": sid, "t": p.t, "b": 1} if long else {"s": sid, "t": p.t, "v": p.v, "q": p.q}


class ShardedCurrents:
    def __init__(self, coll: AsyncCollection[Any], at_or_before: AtOrBefore) -> None:
        self.coll = coll
        self._at_or_before = at_or_before  # a long value's sample, from its bucket
        self._lock = asyncio.Lock()  # one edit at a time in this process; other processes: versions, below

    async def read(self, sids: Iterable[str]) -> dict[str, Point]:
        keys = {sid: entry_key(sid) for sid in sids}
        shards = sorted({shard_of(k) for k in keys.values()})
        fields = {f"c.{k}": 1 for k in keys.values()} if len(keys) <= PROJECTED_MAX else {"c": 1}
        newest = await self._newest(shards, fields)
        found: dict[str, Point] = {}
        for sid, k in keys.items():
            doc = newest.get(shard_of(k))
            e = ((doc or {}).get("c") or {}).get(k)
            if e is None or e.get("s") != sid:
                continue
            if "b" not in e:
                found[sid] = Point(e["t"], e.get("v"), e.get("q"))
            elif (p := await self._at_or_before(sid, e["t"])) is not None and p.t == e["t"]:
                found[sid] = p
        return found

    async def advance(self, newest: dict[str, Point]) -> None:
        """Each sid's entry moved to its point in `newest`, unless a newer one is stored."""
        wanted: dict[str, dict[str, Entry]] = defaultdict(dict)
        for sid, p in newest.items():
            k = entry_key(sid)
            wanted[shard_of(k)][k] = _entry(sid, p)

        def newer(shard: str) -> Change:
            def change(stored: dict[str, Entry]) -> dict[str, Entry] | None:
                new = {k: e for k, e in wanted[shard].items() if k not in stored or stored[k]["t"] < e["t"]}
                return {**stored, **new} if new else None

            return change

        await self._edit({shard: newer(shard) for shard in wanted})

    async def expire(self, before: int) -> None:
        """Entries older than `before` (µs) removed."""

        def change(stored: dict[str, Entry]) -> dict[str, Entry] | None:
            kept = {k: e for k, e in stored.items() if e["t"] >= before}
            return kept if len(kept) < len(stored) else None

        await self._edit(dict.fromkeys(ALL_SHARDS, change))

    async def _edit(self, changes: dict[str, Change]) -> None:
        """Each shard's change applied to its newest version, as the next version, until every write was first."""
        pending = sorted(changes)
        async with self._lock:
            while pending:
                newest = await self._newest(pending, None)
                again: list[str] = []
                written: dict[str, int] = {}
                for shard in pending:
                    doc = newest.get(shard)
                    entries = changes[shard]((doc or {}).get("c") or {})
                    if entries is None:
                        continue
                    version = int(doc["ver"]) + 1 if doc else 1
                    try:
                        await self.coll.insert_one(
                            {"_id": f"{shard}.{version}", "s": shard, "ver": version, "c": entries}
                        )
                    except DuplicateKeyError:  # another writer's version came first: read it and merge again
                        again.append(shard)
                        continue
                    written[shard] = version
                    if doc:
                        await self.coll.delete_one({"_id": doc["_id"]})
                # A version read before another writer made the next and deleted it can be inserted again (its
                # `_id` free again) behind a newer one, which readers take: then it did not count, and is merged again.
                if written:
                    newer = await self._newest(sorted(written), {"_id": 1})
                    again += [shard for shard, version in written.items() if newer[shard]["ver"] > version]
                pending = sorted(again)

    async def _newest(self, shards: list[str], fields: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
        """Each shard's newest version. Older ones are left only by a writer that stopped between writing the next
        version and deleting its own: deleted here."""
        # One query even for a few shards: the collection holds about 64 documents.
        wanted = None if fields is None else {**fields, "s": 1, "ver": 1}
        newest: dict[str, dict[str, Any]] = {}
        stale: list[str] = []
        async for doc in self.coll.find({"s": {"$in": shards}}, wanted):
            held = newest.get(doc["s"])
            if held is not None and held["ver"] > doc["ver"]:
                stale.append(doc["_id"])
                continue
            if held is not None:
                stale.append(held["_id"])
            newest[doc["s"]] = doc
        if stale:
            await self.coll.delete_many({"_id": {"$in": stale}})
        return newest

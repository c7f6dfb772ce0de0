"""Leases in Memcached: exactly one instance in the cluster reads each sid.

`add` with a TTL takes a lease (it fails when somebody holds it); `gets`+`cas` renews it only while the value is
still ours (many leases at once: `renew_many`, a round trip per command for up to 100 of them); a lease whose owner
died expires and the next `add` elsewhere wins. A watermark key remembers the last published timestamp, so a new
owner does not re-publish what the old one already sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from tributary_common.cache import Cache
from tributary_common.timeutil import format_time, parse_time

WATERMARK_TTL_S = 7 * 24 * 3600


class Leases:
    def __init__(self, cache: Cache, source: str, owner: str, ttl_s: float) -> None:
        self._cache = cache
        self._source = source
        self._owner = owner.encode()
        self.ttl_s = ttl_s

    def _key(self, sid: str) -> str:
        return f"lease:{self._source}:{sid}"

    def _wm_key(self, sid: str) -> str:
        return f"wm:{self._source}:{sid}"

    async def holders(self, sids: list[str]) -> dict[str, str]:
        """Who holds each of `sids` (missing: nobody)."""
        found = await self._cache.get_many([self._key(s) for s in sids])
        by_key = {self._key(s): s for s in sids}
        return {by_key[k]: v.decode(errors="replace") for k, v in found.items()}

    async def acquire(self, sid: str) -> bool:
        if await self._cache.add(self._key(sid), self._owner, ttl=self.ttl_s):
            return True
        # Still ours from before (e.g. a renewal failed on a Memcached hiccup): take it back.
        return await self.renew(sid)

    async def acquire_many(self, sids: list[str], limit: int) -> dict[str, datetime | None]:
        """Take up to `limit` of `sids` (in order); each one taken, with its watermark."""
        taken: list[str] = []
        for sid in sids:
            if len(taken) >= limit:
                break
            if await self.acquire(sid):
                taken.append(sid)
        if not taken:
            return {}
        marks = await self._cache.get_many([self._wm_key(s) for s in taken])
        out: dict[str, datetime | None] = {}
        for sid in taken:
            raw = marks.get(self._wm_key(sid))
            try:
                out[sid] = None if raw is None else parse_time(raw.decode())
            except ValueError:
                out[sid] = None
        return out

    async def renew(self, sid: str) -> bool:
        key = self._key(sid)
        value, token = await self._cache.gets(key)
        if value != self._owner or token is None:
            return False
        return await self._cache.cas(key, self._owner, token, ttl=self.ttl_s)

    async def renew_many(self, sids: Sequence[str]) -> set[str]:
        """Those of `sids` renewed: still ours, and nobody changed them between our `gets` and `cas`."""
        keys = [self._key(s) for s in sids]
        held = await self._cache.gets_many(keys)
        ours = [
            (sid, key, held[key][1])
            for sid, key in zip(sids, keys, strict=True)
            if key in held and held[key][0] == self._owner
        ]
        stored = await self._cache.cas_many([(key, self._owner, token) for _, key, token in ours], ttl=self.ttl_s)
        return {sid for (sid, _, _), ok in zip(ours, stored, strict=True) if ok}

    async def release(self, sid: str) -> None:
        """Let go at once (instead of waiting for expiry), only if it is still ours."""
        key = self._key(sid)
        value, _ = await self._cache.gets(key)
        if value == self._owner:
            await self._cache.delete(key)

    async def set_watermark(self, sid: str, t: datetime) -> None:
        await self._cache.set(self._wm_key(sid), format_time(t).encode(), ttl=WATERMARK_TTL_S)

    async def set_watermarks(self, marks: Mapping[str, datetime]) -> set[str]:
        """Write many watermarks, a round trip per 100: the sids whose watermark was stored."""
        sids = list(marks)
        stored = await self._cache.set_many(
            {self._wm_key(s): format_time(marks[s]).encode() for s in sids}, ttl=WATERMARK_TTL_S
        )
        return {sid for sid, ok in zip(sids, stored, strict=True) if ok}

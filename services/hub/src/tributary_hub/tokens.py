"""A JWT verifier that remembers verified tokens until they expire: HMAC and claim checks cost about as much
as the rest of a publish request, and clients send the same token on every request."""

from __future__ import annotations

import time

from tributary_common.auth import JwtVerifier, Principal
from tributary_common.ttl_cache import TtlCache

MAX_REMEMBERED = 10_000


class CachingJwtVerifier(JwtVerifier):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Each entry fresh until its token's `exp` (wall-clock time, as `exp` is).
        self._verified: TtlCache[str, Principal] = TtlCache(0, max_entries=MAX_REMEMBERED, clock=time.time)

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None:
            return hit.value
        principal = await super().verify(token)  # raises for a bad token: never cached
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float):
            self._verified.put(token, principal, expires=float(exp))
        return principal

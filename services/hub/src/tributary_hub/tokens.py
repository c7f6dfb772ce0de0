"""A JWT verifier that remembers verified tokens until they expire: HMAC and claim checks cost about as much
as the rest of a publish request, and clients send the same token on every request."""

from __future__ import annotations

import time

from tributary_common.auth import JwtVerifier, Principal

MAX_REMEMBERED = 10_000


class CachingJwtVerifier(JwtVerifier):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._verified: dict[str, tuple[float, Principal]] = {}

    async def verify(self, token: str) -> Principal:
        hit = self._verified.get(token)
        if hit is not None and hit[0] > time.time():
            return hit[1]
        principal = await super().verify(token)  # raises for a bad token: never cached
        exp = principal.claims.get("exp")
        if isinstance(exp, int | float):
            if len(self._verified) >= MAX_REMEMBERED:
                self._verified.clear()
            self._verified[token] = (float(exp), principal)
        return principal

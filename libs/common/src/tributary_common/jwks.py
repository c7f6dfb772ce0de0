"""Signing keys from an identity provider's JWKS URL, for verifying bearer tokens in production (auth.py)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time

import httpx
import jwt

from .auth_errors import AuthError, AuthUnavailable

log = logging.getLogger("tributary_common.auth")

# JWKS fetching (production): a bound on each fetch, how long fetched keys are trusted, and how often an
# unknown `kid` may trigger a fetch (a flood of made-up kids costs the identity provider one request per interval).
JWKS_TIMEOUT_S = 5.0
JWKS_LIFESPAN_S = 300.0
JWKS_MIN_REFRESH_S = 10.0
JWKS_MAX_BYTES = 1 << 20


class JwksKeys:
    """The signing keys at a JWKS URL, fetched off the event loop (async HTTP, whole fetch under a timeout),
    cached for `lifespan_s`, fetched again for an unknown `kid` at most once per `min_refresh_s`. Concurrent
    callers share one fetch. When a refresh fails, keys already known keep working until one succeeds."""

    def __init__(
        self,
        url: str,
        *,
        timeout_s: float = JWKS_TIMEOUT_S,
        lifespan_s: float = JWKS_LIFESPAN_S,
        min_refresh_s: float = JWKS_MIN_REFRESH_S,
    ) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.lifespan_s = lifespan_s
        self.min_refresh_s = min_refresh_s
        self.fetches = 0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._declared: dict[str, str] = {}  # kid -> the `alg` member of its JWK, where the JWK has one
        self._attempted_at = -math.inf  # monotonic time of the last fetch, successful or not
        self._loaded_at = -math.inf
        self._error: str | None = None  # why the last fetch failed (None: it succeeded)
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def key(self, kid: str | None) -> jwt.PyJWK:
        if kid not in self._keys:
            await self._refresh()
        elif time.monotonic() - self._loaded_at > self.lifespan_s and self._background is None:
            # A known key is still good for this request; the keys are renewed behind it.
            self._background = asyncio.create_task(self._refresh(), name="jwks-refresh")
            self._background.add_done_callback(self._refreshed)
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        if self._error is not None:
            # The reason (URLs, addresses) is in the log, not in an answer to an unauthenticated caller.
            raise AuthUnavailable("cannot fetch the identity provider's signing keys now; retry later")
        if kid is None:
            raise AuthError("invalid token: no 'kid' in its header")
        raise AuthError(f"invalid token: no signing key with kid {kid[:64]!r}")

    def declared_alg(self, key: jwt.PyJWK) -> str | None:
        """The algorithm a key's JWK names in its `alg` member (optional in RFC 7517: Azure AD's omit it)."""
        return self._declared.get(key.key_id or "")

    def _refreshed(self, task: asyncio.Task[None]) -> None:
        self._background = None

    async def _refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._attempted_at < self.min_refresh_s:
                return  # fetched just now (by a concurrent caller) or too recently to ask again
            self._attempted_at = time.monotonic()
            self.fetches += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    keys, declared = await self._fetch()
            except Exception as exc:  # noqa: BLE001 - any failure to fetch is "keys unavailable", never a 500
                reason = "timed out" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
                self._error = reason[:200]
                log.warning("JWKS fetch from %s failed (%s); keeping %d known keys", self.url, reason, len(self._keys))
                return
            self._keys, self._declared, self._loaded_at, self._error = keys, declared, time.monotonic(), None

    async def _fetch(self) -> tuple[dict[str, jwt.PyJWK], dict[str, str]]:
        async with (
            httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as client,
            client.stream("GET", self.url, headers={"Accept": "application/json"}) as response,
        ):
            response.raise_for_status()
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > JWKS_MAX_BYTES:
                    raise ValueError(f"JWKS larger than {JWKS_MAX_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document (no 'keys' list)")
        usable = [k for k in document["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
        declared = {str(k.get("kid") or ""): k["alg"] for k in usable if isinstance(k.get("alg"), str)}
        return {k.key_id or "": k for k in jwt.PyJWKSet(usable).keys}, declared

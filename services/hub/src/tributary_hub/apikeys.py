"""API keys for machines: created by an admin, the secret shown once, only its SHA-256 stored.

A key is `trk_<43 url-safe characters>` (32 random bytes); it has no dots, so the authenticator tells it from a
JWT. Verdicts are cached in-process for `cache_s`, so a deleted key stops working within that time. A key may
expire: its claims carry `exp`, so it is refused from then on (cached or not) and the stream ends its open streams
at that time. Its last use is written at most once a minute per key and process, off the request's path.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo.errors import PyMongoError

from tributary_common.auth import SCOPES, AuthError, Principal, principal_from_claims
from tributary_common.claims import UNITOP_GLOB_RE, UNITOP_GLOB_RULE
from tributary_common.names import InvalidName, validate_pattern
from tributary_common.timeutil import utcnow
from tributary_common.ttl_cache import TtlCache

from .documents import ApiKeyDoc, ApiKeyFields
from .errors import Invalid, NotFound
from .stored import readable

PREFIX = "trk_"
LAST_USED_EVERY_S = 60.0
MAX_LIFETIME = timedelta(days=3650)
log = logging.getLogger(__name__)


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_view(doc: ApiKeyDoc) -> dict[str, Any]:
    return {
        "id": doc.id,
        **doc.model_dump(include=set(ApiKeyFields.model_fields)),
        "expired": doc.expires_at is not None and doc.expires_at <= utcnow(),
        "last_used_at": doc.last_used_at,
    }


def key_claims(doc: ApiKeyDoc) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": f"apikey:{doc.id}", "scope": " ".join(doc.scopes), "name": doc.name}
    if doc.expires_at is not None:
        claims["exp"] = int(doc.expires_at.timestamp())
    if doc.topics is not None:
        claims["topics"] = doc.topics
    if doc.unitops is not None:
        claims["unitops"] = doc.unitops
    return claims


class ApiKeyService:
    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._cache: TtlCache[str, dict[str, Any] | None] = TtlCache(cache_s)  # key hash -> claims (None: no key)
        self._used: TtlCache[str, None] = TtlCache(LAST_USED_EVERY_S)  # key ids whose last use was written lately
        self._writes: set[asyncio.Task[None]] = set()

    async def create(
        self,
        *,
        name: str,
        scopes: list[str],
        topics: list[str] | None,
        unitops: list[str] | None,
        created_by: str,
        expires_at: datetime | None = None,
    ) -> tuple[dict[str, Any], str]:
        problems = [
            {"loc": f"/scopes/{i}", "msg": f"unknown scope; one of {list(SCOPES)}"}
            for i, s in enumerate(scopes)
            if s not in SCOPES
        ]
        now = utcnow()
        if expires_at is not None:
            if expires_at.tzinfo is None:
                problems.append({"loc": "/expires_at", "msg": "a time with an offset (Z or +hh:mm)"})
            elif expires_at <= now:
                problems.append({"loc": "/expires_at", "msg": "must be in the future"})
            elif expires_at - now > MAX_LIFETIME:
                problems.append({"loc": "/expires_at", "msg": "at most 10 years ahead"})
        for i, p in enumerate(topics or []):
            try:
                validate_pattern(p)
            except InvalidName as exc:
                problems.append({"loc": f"/topics/{i}", "msg": str(exc)})
        for i, glob in enumerate(unitops or []):
            # The rule of a token's `unitops` and of the claim map: the glob is compiled and matched on every use.
            if not UNITOP_GLOB_RE.fullmatch(glob):
                problems.append({"loc": f"/unitops/{i}", "msg": UNITOP_GLOB_RULE})
        if problems:
            raise Invalid("the API key request is invalid", problems, code="invalid_api_key")
        secret = PREFIX + secrets.token_urlsafe(32)
        doc = ApiKeyDoc(
            id=secrets.token_hex(8),
            name=name,
            key_hash=hash_key(secret),
            scopes=scopes,
            topics=topics,
            unitops=unitops,
            created_by=created_by,
            created_at=now,
            updated_by=created_by,
            updated_at=now,
            # Whole seconds, like a token's `exp`: the listing, the hub and the stream then agree on the instant.
            expires_at=None if expires_at is None else expires_at.astimezone(UTC).replace(microsecond=0),
        )
        await doc.insert()
        return key_view(doc), secret

    async def all(self) -> list[dict[str, Any]]:
        return [key_view(d) async for d in readable(ApiKeyDoc, {}, [("created_at", 1)])]

    async def get(self, key_id: str) -> ApiKeyDoc:
        doc = await ApiKeyDoc.get(key_id)
        if doc is None:
            raise NotFound(f"no API key {key_id[:64]!r}", code="unknown_api_key")
        return doc

    async def delete(self, key_id: str) -> dict[str, Any]:
        """Revoke; the view of the key that was (for the audit log)."""
        doc = await self.get(key_id)
        result = await ApiKeyDoc.get_pymongo_collection().delete_one({"_id": key_id})
        if result.deleted_count != 1:
            raise NotFound(f"no API key {key_id[:64]!r}", code="unknown_api_key")
        self._cache.clear()
        return key_view(doc)

    async def _lookup(self, secret: str, fresh: bool) -> dict[str, Any] | None:
        """The key's claims (an expired key's too: `exp` says so), from the cache unless `fresh`."""
        digest = hash_key(secret)
        hit = None if fresh else self._cache.get(digest)
        if hit is not None:
            return hit.value
        doc = await ApiKeyDoc.find_one(ApiKeyDoc.key_hash == digest) if secret.startswith(PREFIX) else None
        claims = key_claims(doc) if doc is not None else None
        self._cache.put(digest, claims)
        return claims

    async def claims(self, secret: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The principal's claims for a key, or None when it is not a live key: unknown, deleted or expired
        (`fresh`: not from the cache). Used by the stream's RPC: its open streams end on None."""
        claims = await self._lookup(secret, fresh)
        if claims is None or _expired(claims):
            return None
        self._touch(claims["sub"].removeprefix("apikey:"))
        return claims

    async def verify(self, secret: str) -> Principal | None:
        claims = await self._lookup(secret, False)
        if claims is None:
            return None
        if _expired(claims):
            raise AuthError("API key expired")
        self._touch(claims["sub"].removeprefix("apikey:"))
        return principal_from_claims(claims, kind="api_key")

    def _touch(self, key_id: str) -> None:
        """Record a use: at most one write per key per minute, never awaited by the request."""
        if self._used.get(key_id) is not None:
            return
        self._used.put(key_id, None)
        task = asyncio.create_task(self._write_last_used(key_id, utcnow()), name="apikey-last-used")
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write_last_used(self, key_id: str, when: datetime) -> None:
        try:
            await ApiKeyDoc.get_pymongo_collection().update_one({"_id": key_id}, {"$set": {"last_used_at": when}})
        except PyMongoError as exc:  # a lost write of a last-used time is not worth a request's failure
            log.warning("could not record the last use of API key %s: %s", key_id, type(exc).__name__)


def _expired(claims: dict[str, Any]) -> bool:
    exp = claims.get("exp")
    return isinstance(exp, int) and exp <= time.time()

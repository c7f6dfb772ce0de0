"""API keys for machines: created by an admin, the secret shown once, only its SHA-256 stored.

A key is `trk_<43 url-safe characters>` (32 random bytes); it has no dots, so the authenticator tells it from a
JWT. Verdicts are cached in-process for `cache_s`, so a deleted key stops working within that time.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any

from tributary_common.auth import SCOPES, Principal, principal_from_claims
from tributary_common.names import NameError_, validate_pattern
from tributary_common.timeutil import utcnow

from .documents import ApiKeyDoc
from .errors import Invalid, NotFound
from .stored import readable

PREFIX = "trk_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_view(doc: ApiKeyDoc) -> dict[str, Any]:
    return {
        "id": doc.id,
        "name": doc.name,
        "scopes": doc.scopes,
        "topics": doc.topics,
        "unitops": doc.unitops,
        "created_by": doc.created_by,
        "created_at": doc.created_at,
    }


def key_claims(doc: ApiKeyDoc) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": f"apikey:{doc.id}", "scope": " ".join(doc.scopes), "name": doc.name}
    if doc.topics is not None:
        claims["topics"] = doc.topics
    if doc.unitops is not None:
        claims["unitops"] = doc.unitops
    return claims


class ApiKeyService:
    def __init__(self, cache_s: float) -> None:
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    async def create(
        self, *, name: str, scopes: list[str], topics: list[str] | None, unitops: list[str] | None, created_by: str
    ) -> tuple[dict[str, Any], str]:
        problems = [
            {"loc": f"/scopes/{i}", "msg": f"unknown scope; one of {list(SCOPES)}"}
            for i, s in enumerate(scopes)
            if s not in SCOPES
        ]
        for i, p in enumerate(topics or []):
            try:
                validate_pattern(p)
            except NameError_ as exc:
                problems.append({"loc": f"/topics/{i}", "msg": str(exc)})
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
            created_at=utcnow(),
        )
        await doc.insert()
        return key_view(doc), secret

    async def all(self) -> list[dict[str, Any]]:
        return [key_view(d) async for d in readable(ApiKeyDoc, {}, [("created_at", 1)])]

    async def delete(self, key_id: str) -> None:
        result = await ApiKeyDoc.get_pymongo_collection().delete_one({"_id": key_id})
        if result.deleted_count != 1:
            raise NotFound(f"no API key {key_id!r}", code="unknown_api_key")
        self._cache.clear()

    async def claims(self, secret: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The principal's claims for a key, or None when it is not a live key (`fresh`: not from the cache)."""
        digest = hash_key(secret)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.cache_s and not fresh:
            return hit[1]
        doc = await ApiKeyDoc.find_one(ApiKeyDoc.key_hash == digest) if secret.startswith(PREFIX) else None
        claims = key_claims(doc) if doc is not None else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, claims)
        return claims

    async def verify(self, secret: str) -> Principal | None:
        claims = await self.claims(secret)
        return None if claims is None else principal_from_claims(claims)

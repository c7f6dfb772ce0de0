"""The publishing hot path's view of topics (`resolve`, `validator`).

Topic metadata from Memcached (`topic:<name>`, invalidated on every change), then the compiled validator from
an in-process cache keyed by `(name, uid, version)`; the schema itself is cached in Memcached under
`schema:<uid>:<version>` (immutable, so never invalidated). Memcached is a cache: when it is unreachable, the
database answers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import aiomcache
import jsonschema_rs
import orjson

from tributary_common.cache import Cache
from tributary_common.events import dataschema_for
from tributary_common.ttl_cache import TtlCache

from .documents import SchemaDoc
from .errors import NotFound
from .schemas import compile_schema
from .topic_store import read_topic, schema_id

log = logging.getLogger("tributary_hub.topics")  # the topics' log, as before the hot path had its own module


@dataclass(frozen=True)
class TopicRef:
    """What publishing needs to know about a topic."""

    name: str
    uid: str
    version: int
    retention_days: float | None
    expose_publisher: bool = False

    @property
    def dataschema(self) -> str:
        return dataschema_for(self.name, self.version)


class TopicLookup:
    def __init__(self, cache: Cache, *, cache_ttl_s: float, local_ttl_s: float = 0) -> None:
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s
        self.local_ttl_s = local_ttl_s
        self._local: TtlCache[str, TopicRef] = TtlCache(local_ttl_s)
        self._validators: dict[tuple[str, str, int], jsonschema_rs.Draft202012Validator] = {}

    async def _cache_get(self, key: str) -> bytes | None:
        try:
            return await self.cache.get(key)
        except (OSError, aiomcache.exceptions.ClientException) as exc:
            log.warning("memcached get %s failed (%s): reading the database", key, exc)
            return None

    async def _cache_set(self, key: str, value: bytes) -> None:
        try:
            await self.cache.set(key, value, self.cache_ttl_s)
        except (OSError, aiomcache.exceptions.ClientException) as exc:
            log.warning("memcached set %s failed (%s)", key, exc)

    async def invalidate(self, name: str) -> None:
        """After a change of the topic: shared cache entry dropped (the local one is `forget`)."""
        key = f"topic:{name}"
        try:
            await self.cache.delete(key)
        except (OSError, aiomcache.exceptions.ClientException) as exc:
            # Entries expire after topic_cache_ttl_s at the latest.
            log.warning("memcached delete %s failed (%s)", key, exc)

    async def resolve(self, name: str) -> TopicRef:
        # A very short in-process memory spares the hot path a Memcached round trip per request; changes made
        # through this process are seen at once (forget), changes through another hub within local_ttl_s.
        hit = self._local.get(name)
        if hit is not None:
            return hit.value
        ref = await self._resolve(name)
        self._local.put(name, ref)
        return ref

    def forget(self, name: str) -> None:
        self._local.forget(name)

    async def _resolve(self, name: str) -> TopicRef:
        raw = await self._cache_get(f"topic:{name}")
        if raw is not None:
            cached = orjson.loads(raw)
        else:
            doc = await read_topic(name)
            cached = {
                "uid": doc.uid,
                "version": doc.version,
                "retention_days": doc.retention_days,
                "expose_publisher": doc.expose_publisher,
            }
            await self._cache_set(f"topic:{name}", orjson.dumps(cached))
        return TopicRef(
            name,
            cached["uid"],
            int(cached["version"]),
            cached.get("retention_days"),
            cached.get("expose_publisher") is True,
        )

    async def validator(self, ref: TopicRef) -> jsonschema_rs.Draft202012Validator:
        key = (ref.name, ref.uid, ref.version)
        validator = self._validators.get(key)
        if validator is None:
            validator = compile_schema(await self.schema(ref.name, ref.uid, ref.version))
            self._validators[key] = validator
        return validator

    async def schema(self, name: str, uid: str, version: int) -> dict[str, Any]:
        cache_key = f"schema:{uid}:{version}"
        raw = await self._cache_get(cache_key)
        if raw is None:
            doc = await SchemaDoc.get(schema_id(name, uid, version))
            if doc is None:
                raise NotFound(f"topic {name!r} has no schema version {version}", code="unknown_version")
            raw = doc.schema_text.encode()
            if len(raw) < 900_000:
                await self._cache_set(cache_key, raw)
        schema: dict[str, Any] = orjson.loads(raw)
        return schema

"""Topics and their schema versions: the system-of-record operations and the hot-path lookup.

Hot path (`resolve`): topic metadata from Memcached (`topic:<name>`, invalidated on every change), then the
compiled validator from an in-process cache keyed by `(name, uid, version)`; the schema itself is cached in
Memcached under `schema:<uid>:<version>` (immutable, so never invalidated).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiomcache
import jsonschema_rs
import orjson
from beanie.odm.utils.parsing import parse_obj
from pydantic import ValidationError

from tributary_common.cache import Cache
from tributary_common.events import dataschema_for
from tributary_common.timeutil import utcnow

from .compatibility import Compatibility, check
from .documents import EventDoc, SchemaDoc, TopicDoc
from .errors import Conflict, Invalid, NotFound, TooLarge, validation_details
from .schemas import SchemaRejected, check_schema, compile_schema
from .stored import problems, readable, report_unreadable

log = logging.getLogger(__name__)


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


def _schema_id(topic: str, uid: str, version: int) -> str:
    return f"{topic}/{uid}/{version}"


def _check_stored_form(merged: dict[str, Any], *, changed: set[str]) -> None:
    """Refuse a change that would store a topic this hub cannot read back (the domain's own guard, whatever
    the API let through); problems in fields not being changed are left for a later PATCH to repair."""
    try:
        parse_obj(TopicDoc, merged)
    except ValidationError as exc:
        bad = [
            d for d, e in zip(validation_details(exc), exc.errors(), strict=True) if e["loc"] and e["loc"][0] in changed
        ]
        if bad:
            raise Invalid("the change would store an invalid topic", bad, code="invalid_request") from exc


def topic_view(doc: TopicDoc, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "name": doc.id,
        "version": doc.version,
        "dataschema": dataschema_for(doc.id, doc.version),
        "compatibility": doc.compatibility,
        "retention_days": doc.retention_days,
        "description": doc.description,
        "expose_publisher": doc.expose_publisher,
        "created_at": doc.created_at,
        "updated_at": doc.updated_at,
        "created_by": doc.created_by,
        "updated_by": doc.updated_by,
    }
    if schema is not None:
        view["schema"] = schema
    return view


class TopicService:
    def __init__(
        self, cache: Cache, *, max_schema_bytes: int, max_schema_depth: int, cache_ttl_s: float, local_ttl_s: float = 0
    ) -> None:
        self.cache = cache
        self.local_ttl_s = local_ttl_s
        self._local: dict[str, tuple[float, TopicRef]] = {}
        self.max_schema_bytes = max_schema_bytes
        self.max_schema_depth = max_schema_depth
        self.cache_ttl_s = cache_ttl_s
        self._validators: dict[tuple[str, str, int], jsonschema_rs.Draft202012Validator] = {}

    # Administration

    def _accept(self, schema: Any) -> None:
        try:
            check_schema(schema, max_bytes=self.max_schema_bytes, max_depth=self.max_schema_depth)
        except SchemaRejected as exc:
            details = [{"loc": p.loc, "msg": p.msg} for p in exc.problems]
            if exc.too_large:
                raise TooLarge(str(exc), details, code="schema_too_large") from exc
            raise Invalid(str(exc), details, code="invalid_schema") from exc

    async def create(
        self,
        name: str,
        schema: dict[str, Any],
        *,
        compatibility: Compatibility,
        retention_days: float | None,
        description: str | None,
        expose_publisher: bool = False,
        by: str = "system",
    ) -> dict[str, Any]:
        self._accept(schema)
        if await TopicDoc.get(name) is not None:
            raise Conflict(f"topic {name!r} already exists", code="topic_exists")
        now = utcnow()
        uid = uuid.uuid4().hex[:12]
        await SchemaDoc(
            id=_schema_id(name, uid, 1),
            topic=name,
            uid=uid,
            version=1,
            schema_text=orjson.dumps(schema).decode(),
            created_at=now,
            created_by=by,
        ).insert()
        doc = TopicDoc(
            id=name,
            uid=uid,
            version=1,
            compatibility=compatibility.value,
            retention_days=retention_days,
            description=description,
            expose_publisher=expose_publisher,
            created_at=now,
            updated_at=now,
            created_by=by,
            updated_by=by,
        )
        try:
            await doc.insert()
        except Exception as exc:
            if "duplicate key" in str(exc).lower() or "E11000" in str(exc):
                raise Conflict(f"topic {name!r} already exists", code="topic_exists") from exc
            raise
        self.forget(name)
        await self._cache_delete(f"topic:{name}")
        return topic_view(doc, schema)

    async def _doc(self, name: str) -> TopicDoc:
        try:
            doc = await TopicDoc.get(name)
        except ValidationError as exc:
            report_unreadable(TopicDoc.get_collection_name(), name, exc)
            raise Conflict(
                f"topic {name!r} is stored in a form this hub cannot read ({problems(exc)}); "
                "PATCH the fields named or DELETE the topic",
                validation_details(exc),
                code="unreadable_topic",
            ) from exc
        if doc is None:
            raise NotFound(f"topic {name!r} does not exist", code="unknown_topic")
        return doc

    async def _raw(self, name: str) -> dict[str, Any]:
        """The stored document as it is, readable or not: what updates and deletes need (and can repair)."""
        raw: dict[str, Any] | None = await TopicDoc.get_pymongo_collection().find_one({"_id": name})
        if raw is None:
            raise NotFound(f"topic {name!r} does not exist", code="unknown_topic")
        return raw

    async def get(self, name: str) -> dict[str, Any]:
        doc = await self._doc(name)
        return topic_view(doc, await self._schema(doc.id, doc.uid, doc.version))

    async def snapshot(self, name: str) -> dict[str, Any]:
        """The topic's view for the audit trail before a change; an unreadable topic's stored fields as they are
        (it can still be repaired or deleted). A missing topic is the usual 404."""
        try:
            return await self.get(name)
        except Conflict:
            return {k: v for k, v in (await self._raw(name)).items() if k != "_id"} | {"name": name}

    async def all(self) -> list[dict[str, Any]]:
        return [topic_view(d) async for d in readable(TopicDoc, {}, [("_id", 1)])]

    async def update_schema(self, name: str, schema: dict[str, Any], *, by: str = "system") -> dict[str, Any]:
        self._accept(schema)
        doc = await self._doc(name)
        previous = await self._schema(doc.id, doc.uid, doc.version)
        breaks = check(doc.compatibility, previous, schema)
        if breaks:
            raise Conflict(
                f"schema change breaks the topic's {doc.compatibility} compatibility with version {doc.version}",
                [{"loc": "/schema" + b.loc, "msg": b.msg} for b in breaks],
                code="incompatible_schema",
            )
        version = doc.version + 1
        now = utcnow()
        await SchemaDoc(
            id=_schema_id(name, doc.uid, version),
            topic=name,
            uid=doc.uid,
            version=version,
            schema_text=orjson.dumps(schema).decode(),
            created_at=now,
            created_by=by,
        ).insert()
        # Only move the current version if nobody else did meanwhile (a concurrent update gets a 409).
        result = await TopicDoc.get_pymongo_collection().update_one(
            {"_id": name, "uid": doc.uid, "version": doc.version},
            {"$set": {"version": version, "updated_at": now, "updated_by": by}},
        )
        if result.modified_count != 1:
            await SchemaDoc.get_pymongo_collection().delete_one({"_id": _schema_id(name, doc.uid, version)})
            raise Conflict(f"topic {name!r} changed concurrently; retry", code="concurrent_update")
        self.forget(name)
        await self._cache_delete(f"topic:{name}")
        doc.version, doc.updated_at, doc.updated_by = version, now, by
        return topic_view(doc, schema)

    async def update_settings(self, name: str, changes: dict[str, Any], *, by: str = "system") -> dict[str, Any]:
        raw = await self._raw(name)
        if changes:
            changes["updated_at"], changes["updated_by"] = utcnow(), by
            _check_stored_form({**raw, **changes}, changed=set(changes))
            await TopicDoc.get_pymongo_collection().update_one({"_id": name, "uid": raw.get("uid")}, {"$set": changes})
            self.forget(name)
        await self._cache_delete(f"topic:{name}")
        return await self.get(name)

    async def versions(self, name: str) -> list[dict[str, Any]]:
        doc = await self._doc(name)
        rows = await SchemaDoc.find(SchemaDoc.topic == name, SchemaDoc.uid == doc.uid).sort("version").to_list()
        return [
            {
                "version": r.version,
                "dataschema": dataschema_for(name, r.version),
                "created_at": r.created_at,
                "created_by": r.created_by,
            }
            for r in rows
        ]

    async def schema_version(self, name: str, version: int) -> dict[str, Any]:
        doc = await self._doc(name)
        if not 1 <= version <= doc.version:
            raise NotFound(
                f"topic {name!r} has no schema version {version} (current is {doc.version})", code="unknown_version"
            )
        return {
            "topic": name,
            "version": version,
            "dataschema": dataschema_for(name, version),
            "schema": await self._schema(name, doc.uid, version),
        }

    async def delete(self, name: str, *, force: bool) -> int:
        """Delete the topic; refused while it has events unless `force` (then its events go too). Works on an
        unreadable document too, so that it can always be removed."""
        uid = (await self._raw(name)).get("uid")
        events = EventDoc.get_pymongo_collection()
        count = await events.count_documents({"type": name}, limit=1)
        if count and not force:
            raise Conflict(
                f"topic {name!r} has recorded events; delete with ?force=true to remove them too",
                code="topic_has_events",
            )
        await TopicDoc.get_pymongo_collection().delete_one({"_id": name, "uid": uid})
        self.forget(name)
        await self._cache_delete(f"topic:{name}")
        deleted = (await events.delete_many({"type": name})).deleted_count if force else 0
        await SchemaDoc.get_pymongo_collection().delete_many({"topic": name, "uid": uid})
        return int(deleted)

    # Hot path

    async def _cache_get(self, key: str) -> bytes | None:
        """Memcached is a cache: when it is unreachable, fall back to the database."""
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

    async def _cache_delete(self, key: str) -> None:
        try:
            await self.cache.delete(key)
        except (OSError, aiomcache.exceptions.ClientException) as exc:
            # Entries expire after topic_cache_ttl_s at the latest.
            log.warning("memcached delete %s failed (%s)", key, exc)

    async def resolve(self, name: str) -> TopicRef:
        # A very short in-process memory spares the hot path a Memcached round trip per request; changes made
        # through this process are seen at once (forget), changes through another hub within local_ttl_s.
        hit = self._local.get(name)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self.local_ttl_s:
            return hit[1]
        ref = await self._resolve(name)
        if len(self._local) > 10_000:
            self._local.clear()
        self._local[name] = (now, ref)
        return ref

    def forget(self, name: str) -> None:
        self._local.pop(name, None)

    async def _resolve(self, name: str) -> TopicRef:
        raw = await self._cache_get(f"topic:{name}")
        if raw is not None:
            cached = orjson.loads(raw)
        else:
            doc = await self._doc(name)
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
            validator = compile_schema(await self._schema(ref.name, ref.uid, ref.version))
            self._validators[key] = validator
        return validator

    async def _schema(self, name: str, uid: str, version: int) -> dict[str, Any]:
        cache_key = f"schema:{uid}:{version}"
        raw = await self._cache_get(cache_key)
        if raw is None:
            doc = await SchemaDoc.get(_schema_id(name, uid, version))
            if doc is None:
                raise NotFound(f"topic {name!r} has no schema version {version}", code="unknown_version")
            raw = doc.schema_text.encode()
            if len(raw) < 900_000:
                await self._cache_set(cache_key, raw)
        schema: dict[str, Any] = orjson.loads(raw)
        return schema

"""Topics and their schema versions: the system-of-record operations. The hot-path lookup (`resolve`,
`validator`) is `topic_lookup.TopicLookup`, kept in step by every change made here."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import jsonschema_rs
import orjson

from tributary_common.cache import Cache
from tributary_common.events import dataschema_for
from tributary_common.timeutil import utcnow

from . import cursors
from .compatibility import Compatibility, check
from .documents import SchemaDoc, TopicDoc
from .errors import Conflict, Invalid, NotFound, TooLarge
from .event_store import EventStore
from .partitions import LEGACY_ID_SHARDS
from .schemas import SchemaRejected, check_schema
from .stored import insert_new, readable
from .topic_lookup import TopicLookup, TopicRef
from .topic_store import Topic, check_stored_form, read_raw, read_topic, schema_id, topic_view

# A schema version this old whose topic never moved to it was left by an update that stopped between its two writes
# (a crash, the database lost): the next update may take its place. A writer in progress moves within milliseconds.
ABANDONED_AFTER = timedelta(seconds=30)


async def _take_over_abandoned(new: SchemaDoc, now: datetime) -> bool:
    """Replace the version `new` would be, if an update abandoned it; False while another may still finish it."""
    schemas = SchemaDoc.get_pymongo_collection()
    there = await schemas.find_one({"_id": new.id})
    if there is None or there["created_at"] > now - ABANDONED_AFTER:
        return False
    result = await schemas.replace_one(
        {"_id": new.id, "created_at": there["created_at"]}, new.model_dump(by_alias=True)
    )
    return bool(result.modified_count)


class TopicService:
    def __init__(
        self,
        cache: Cache,
        events: EventStore,
        *,
        max_schema_bytes: int,
        max_schema_depth: int,
        cache_ttl_s: float,
        local_ttl_s: float = 0,
        id_shards: int = LEGACY_ID_SHARDS,
    ) -> None:
        self.events = events
        self.id_shards = id_shards  # of the generations it creates
        self.lookup = TopicLookup(cache, cache_ttl_s=cache_ttl_s, local_ttl_s=local_ttl_s)
        self.max_schema_bytes = max_schema_bytes
        self.max_schema_depth = max_schema_depth

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
    ) -> Topic:
        self._accept(schema)
        if await TopicDoc.get(name) is not None:
            raise Conflict(f"topic {name!r} already exists", code="topic_exists")
        now = utcnow()
        uid = uuid.uuid4().hex[:12]
        await SchemaDoc(
            id=schema_id(name, uid, 1),
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
            id_shards=self.id_shards,
            version=1,
            compatibility=compatibility,
            retention_days=retention_days,
            description=description,
            expose_publisher=expose_publisher,
            created_at=now,
            updated_at=now,
            created_by=by,
            updated_by=by,
        )
        try:
            await insert_new(doc, Conflict(f"topic {name!r} already exists", code="topic_exists"))
        except Conflict:  # a concurrent create won: its first version is the one under its own uid
            await SchemaDoc.get_pymongo_collection().delete_one({"_id": schema_id(name, uid, 1)})
            raise
        self.forget(name)
        await self.lookup.invalidate(name)
        return topic_view(doc, schema)

    async def get(self, name: str) -> Topic:
        doc = await read_topic(name)
        return topic_view(doc, await self.lookup.schema(doc.id, doc.uid, doc.version))

    async def snapshot(self, name: str) -> Topic | dict[str, Any]:
        """The topic's view for the audit trail before a change; an unreadable topic's stored fields as they are
        (it can still be repaired or deleted). A missing topic is the usual 404."""
        try:
            return await self.get(name)
        except Conflict:
            return {k: v for k, v in (await read_raw(name)).items() if k != "_id"} | {"name": name}

    async def page(
        self, visible: Callable[[str], bool], cursor: str | None, limit: int
    ) -> tuple[list[Topic], str | None]:
        """Up to `limit` of the topics `visible` allows, by name after the `cursor`'s; and the cursor of the next
        page, if more follow. Topics the caller cannot see are passed over here, so that no page or cursor names
        one."""
        query = {"_id": {"$gt": cursors.decode(cursor, 1)[0]}} if cursor else {}
        out: list[Topic] = []
        async with contextlib.aclosing(readable(TopicDoc, query, [("_id", 1)])) as docs:
            async for doc in docs:
                if not visible(doc.id):
                    continue
                if len(out) == limit:
                    return out, cursors.encode(out[-1].name)
                out.append(topic_view(doc))
        return out, None

    async def update_schema(self, name: str, schema: dict[str, Any], *, by: str = "system") -> Topic:
        self._accept(schema)
        doc = await read_topic(name)
        previous = await self.lookup.schema(doc.id, doc.uid, doc.version)
        breaks = check(doc.compatibility, previous, schema)
        if breaks:
            raise Conflict(
                f"schema change breaks the topic's {doc.compatibility} compatibility with version {doc.version}",
                [{"loc": "/schema" + b.loc, "msg": b.msg} for b in breaks],
                code="incompatible_schema",
            )
        version = doc.version + 1
        now = utcnow()
        now = now.replace(microsecond=now.microsecond - now.microsecond % 1000)  # as stored: it finds our version
        concurrent = Conflict(f"topic {name!r} changed concurrently; retry", code="concurrent_update")
        new = SchemaDoc(
            id=schema_id(name, doc.uid, version),
            topic=name,
            uid=doc.uid,
            version=version,
            schema_text=orjson.dumps(schema).decode(),
            created_at=now,
            created_by=by,
        )
        # The version's `_id` is unique: of writers that read the same version, one creates the next.
        try:
            await insert_new(new, concurrent)
        except Conflict:
            if not await _take_over_abandoned(new, now):
                raise
        # Only move the current version if nobody else did meanwhile (a concurrent update gets a 409).
        result = await TopicDoc.get_pymongo_collection().update_one(
            {"_id": name, "uid": doc.uid, "version": doc.version},
            {"$set": {"version": version, "updated_at": now, "updated_by": by}},
        )
        if result.modified_count != 1:
            await SchemaDoc.get_pymongo_collection().delete_one({"_id": new.id, "created_at": now})
            raise concurrent
        self.forget(name)
        await self.lookup.invalidate(name)
        doc.version, doc.updated_at, doc.updated_by = version, now, by
        return topic_view(doc, schema)

    async def update_settings(self, name: str, changes: dict[str, Any], *, by: str = "system") -> Topic:
        raw = await read_raw(name)
        if changes:
            changes["updated_at"], changes["updated_by"] = utcnow(), by
            check_stored_form({**raw, **changes}, changed=set(changes))
            await TopicDoc.get_pymongo_collection().update_one({"_id": name, "uid": raw.get("uid")}, {"$set": changes})
            self.forget(name)
        await self.lookup.invalidate(name)
        return await self.get(name)

    async def versions(self, name: str) -> list[dict[str, Any]]:
        doc = await read_topic(name)
        rows = await SchemaDoc.find(SchemaDoc.topic == name, SchemaDoc.uid == doc.uid).sort("version").to_list()
        return [  # not a next version an update is writing, or left behind (`_take_over_abandoned`)
            {
                "version": r.version,
                "dataschema": dataschema_for(name, r.version),
                "created_at": r.created_at,
                "created_by": r.created_by,
            }
            for r in rows
            if r.version <= doc.version
        ]

    async def schema_version(self, name: str, version: int) -> dict[str, Any]:
        doc = await read_topic(name)
        if not 1 <= version <= doc.version:
            raise NotFound(
                f"topic {name!r} has no schema version {version} (current is {doc.version})", code="unknown_version"
            )
        return {
            "topic": name,
            "version": version,
            "dataschema": dataschema_for(name, version),
            "schema": await self.lookup.schema(name, doc.uid, version),
        }

    async def delete(self, name: str, *, force: bool) -> int:
        """Delete the topic; refused while it has events unless `force` (then its events go too). Works on an
        unreadable document too, so that it can always be removed."""
        uid = (await read_raw(name)).get("uid")
        uid = uid if isinstance(uid, str) else None
        count = await self.events.count(uid) if uid else 0
        if count and not force:
            raise Conflict(
                f"topic {name!r} has recorded events; delete with ?force=true to remove them too",
                code="topic_has_events",
            )
        await TopicDoc.get_pymongo_collection().delete_one({"_id": name, "uid": uid})
        self.forget(name)
        await self.lookup.invalidate(name)
        if uid:
            await self.events.partitions.drop_topic(uid)  # its events (when forced), directory, latest, catalog
        await SchemaDoc.get_pymongo_collection().delete_many({"topic": name, "uid": uid})
        return count

    # Hot path (TopicLookup)

    async def resolve(self, name: str) -> TopicRef:
        return await self.lookup.resolve(name)

    async def validator(self, ref: TopicRef) -> jsonschema_rs.Draft202012Validator:
        return await self.lookup.validator(ref)

    def forget(self, name: str) -> None:
        self.lookup.forget(name)

"""Unitop CRUD and search, with items validated against their sources and changes announced on
`tributary.control` (`unitop.<name>`). Search takes a name prefix and exact meta values: never a database
filter from the client.

Items are stored with their params in canonical form (`tributary_common.canonical`: numbers by the schema's type,
defaults left out), so one tag however spelled is one `sid`, read once and stored once.

Fields a source's announced schema marks secret must hold `{"secret": "NAME"}` references: a literal is refused,
and whatever literal an older version stored is shown as `"***"` by every view and change message."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import orjson
from beanie.exceptions import DocumentNotFound

from tributary_common.canonical import UnrepresentableParams, canonical_params
from tributary_common.control import UnitopChange
from tributary_common.rpc_contracts import UnitopResolved
from tributary_common.secrets import literal_secrets, mask_secrets
from tributary_common.timeutil import utcnow
from tributary_common.unitops import Subscription, Unitop

from . import cursors
from .documents import UnitopDoc
from .errors import Conflict, Invalid, NotFound
from .sources import SourceRegistry
from .stored import insert_new, readable

Notify = Callable[[UnitopChange], Awaitable[None]]
Schemas = Mapping[str, Mapping[str, Any]]


def to_unitop(doc: UnitopDoc) -> Unitop:
    return Unitop(
        name=doc.id,
        items={
            k: Subscription(
                source=v["source"], params=orjson.loads(v["params_json"]), stepped=v.get("stepped") == "true"
            )
            for k, v in doc.items.items()
        },
        meta=doc.meta,
        record=doc.record,
    )


def masked(unitop: Unitop, schemas: Schemas) -> Unitop:
    """`unitop` with every literal value of a secret field (per its source's schema) replaced by `"***"`."""
    items = {}
    for name, sub in unitop.items.items():
        schema = schemas.get(sub.source)
        params = sub.params if schema is None else mask_secrets(schema, sub.params)
        items[name] = sub if params is sub.params else sub.model_copy(update={"params": params})
    return unitop.model_copy(update={"items": items})


def unitop_view(doc: UnitopDoc, schemas: Schemas) -> dict[str, Any]:
    unitop = masked(to_unitop(doc), schemas)
    view = unitop.model_dump(mode="json")
    for name, item in view["items"].items():
        # As stored: canonical params hashed (references, never values); an older version's sid is kept as it was.
        item["sid"] = doc.items[name]["sid"]
    view["created_at"] = doc.created_at
    view["updated_at"] = doc.updated_at
    view["created_by"] = doc.created_by
    view["updated_by"] = doc.updated_by
    return view


def meta_candidates(raw: str) -> list[Any]:
    """A query-string value may stand for a string, a number or a bool meta value."""
    values: list[Any] = [raw]
    if raw in ("true", "false"):
        values.append(raw == "true")
    try:
        values.append(int(raw))
    except ValueError:
        with contextlib.suppress(ValueError):
            values.append(float(raw))
    return values


class UnitopService:
    def __init__(self, sources: SourceRegistry, notify: Notify) -> None:
        self.sources = sources
        self.notify = notify

    async def _schemas(self, sources: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The announced subscription schema of each of `sources` (those never announced are left out)."""
        out: dict[str, dict[str, Any]] = {}
        for source in set(sources):
            text = await self.sources.schema(source)
            if text is not None:
                out[source] = orjson.loads(text)
        return out

    async def _check(self, unitop: Unitop) -> tuple[Unitop, Schemas]:
        """`unitop` with its items' params in canonical form (what sids hash), and the schemas of its sources;
        raises `Invalid` naming every bad item."""
        problems = await self.sources.check_items(unitop.items)
        schemas = await self._schemas(sub.source for sub in unitop.items.values())
        secret_problems = [
            {"loc": f"/items/{name}/params{loc}", "msg": msg}
            for name, sub in unitop.items.items()
            if sub.source in schemas
            for loc, msg in literal_secrets(schemas[sub.source], sub.params)
        ]
        items: dict[str, Subscription] = {}
        for name, sub in unitop.items.items():
            if sub.source not in schemas:
                continue  # already a problem: never announced
            try:
                params = canonical_params(schemas[sub.source], sub.params)
            except UnrepresentableParams as exc:
                problems.append({"loc": f"/items/{name}/params{exc.loc}", "msg": exc.msg})
                continue
            items[name] = sub.model_copy(update={"params": params})
        if problems or secret_problems:
            message = f"unitop {unitop.name!r} has invalid items"
            if secret_problems:
                message += '; give credentials as {"secret": "NAME"}, never in clear'
            raise Invalid(message, problems + secret_problems, code="invalid_items")
        return unitop.model_copy(update={"items": items}), schemas

    @staticmethod
    def _items(unitop: Unitop) -> dict[str, dict[str, str]]:
        return {
            name: {"source": sub.source, "sid": sub.sid, "params_json": orjson.dumps(sub.params).decode()}
            | ({"stepped": "true"} if sub.stepped else {})
            for name, sub in unitop.items.items()
        }

    async def create(self, unitop: Unitop, *, by: str = "system") -> dict[str, Any]:
        unitop, schemas = await self._check(unitop)
        if await UnitopDoc.get(unitop.name) is not None:
            raise Conflict(f"unitop {unitop.name!r} already exists", code="unitop_exists")
        now = utcnow()
        doc = UnitopDoc(
            id=unitop.name,
            items=self._items(unitop),
            meta=unitop.meta,
            record=unitop.record,
            created_at=now,
            updated_at=now,
            created_by=by,
            updated_by=by,
        )
        await insert_new(doc, Conflict(f"unitop {unitop.name!r} already exists", code="unitop_exists"))
        await self.notify(UnitopChange(action="created", name=unitop.name, unitop=masked(unitop, schemas), sent_at=now))
        return unitop_view(doc, schemas)

    async def _doc(self, name: str) -> UnitopDoc:
        doc = await UnitopDoc.get(name)
        if doc is None:
            raise NotFound(f"unitop {name!r} does not exist", code="unknown_unitop")
        return doc

    async def get(self, name: str) -> dict[str, Any]:
        doc = await self._doc(name)
        return unitop_view(doc, await self._schemas(item["source"] for item in doc.items.values()))

    async def resolve(self, name: str) -> UnitopResolved:
        doc = await self._doc(name)
        return UnitopResolved(unitop=to_unitop(doc), sids={k: v["sid"] for k, v in doc.items.items()})

    async def update(self, name: str, unitop: Unitop, *, by: str = "system") -> dict[str, Any]:
        if unitop.name != name:
            raise Invalid(
                "the body's name must match the path",
                [{"loc": "/name", "msg": f"expected {name!r}"}],
                code="name_mismatch",
            )
        unitop, schemas = await self._check(unitop)
        doc = await self._doc(name)
        doc.items, doc.meta, doc.record = self._items(unitop), unitop.meta, unitop.record
        doc.updated_at, doc.updated_by = utcnow(), by
        try:
            await doc.replace()  # not `save`: an upsert would bring back a unitop deleted since it was read
        except DocumentNotFound:
            raise NotFound(f"unitop {name!r} does not exist", code="unknown_unitop") from None
        change = UnitopChange(action="updated", name=name, unitop=masked(unitop, schemas), sent_at=doc.updated_at)
        await self.notify(change)
        return unitop_view(doc, schemas)

    async def delete(self, name: str) -> None:
        await self._doc(name)
        await UnitopDoc.get_pymongo_collection().delete_one({"_id": name})
        await self.notify(UnitopChange(action="deleted", name=name, unitop=None, sent_at=utcnow()))

    async def search(
        self,
        *,
        prefix: str | None,
        meta: dict[str, str],
        limit: int,
        cursor: str | None,
        allowed: Callable[[str], bool],
    ) -> tuple[list[dict[str, Any]], str | None]:
        clauses: list[dict[str, Any]] = []
        if prefix:
            clauses.append({"_id": {"$regex": "^" + re.escape(prefix)}})
        for key, raw in meta.items():
            clauses.append({f"meta.{key}": {"$in": meta_candidates(raw)}})
        if cursor:
            (last,) = cursors.decode(cursor, 1)
            clauses.append({"_id": {"$gt": last}})
        query = {"$and": clauses} if clauses else {}
        out: list[UnitopDoc] = []
        # ACL filtering happens here, so pages are filled with what the caller may see.
        async with contextlib.aclosing(readable(UnitopDoc, query, [("_id", 1)])) as docs:
            async for doc in docs:
                if allowed(doc.id):
                    out.append(doc)
                    if len(out) > limit:
                        break
        more = len(out) > limit
        out = out[:limit]
        schemas = await self._schemas(item["source"] for d in out for item in d.items.values())
        return [unitop_view(d, schemas) for d in out], (cursors.encode(out[-1].id) if more and out else None)

    async def recorded(self) -> list[UnitopDoc]:
        return [doc async for doc in readable(UnitopDoc, {"record": True})]

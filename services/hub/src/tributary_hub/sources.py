"""Sources announced by ingest instances on `tributary.control` (`source.<source>`), and validation of unitop
items against the announced subscription JSON Schema."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any

import jsonschema_rs
import orjson

from tributary_common.control import SourceAnnouncement
from tributary_common.egress import EgressPolicy
from tributary_common.timeutil import utcnow
from tributary_common.unitops import Subscription

from .documents import SourceInstanceDoc
from .egress_fields import EgressCheck, marked_fields
from .schemas import compile_schema, violations


class SourceRegistry:
    def __init__(self, egress: EgressPolicy | None = None) -> None:
        self._validators: dict[str, jsonschema_rs.Draft202012Validator] = {}
        self._egress = egress or EgressPolicy()  # TRIBUTARY_HTTP_ALLOW, the policy ingest enforces

    async def record(self, announcement: SourceAnnouncement) -> None:
        doc = {
            "source": announcement.source,
            "instance_id": announcement.instance_id,
            "subscription_schema_text": orjson.dumps(announcement.subscription_schema).decode(),
            "capacity": announcement.capacity,
            "free": announcement.free,
            "leases": announcement.leases,
            "ttl_s": announcement.ttl_s,
            "sent_at": announcement.sent_at,
            "received_at": utcnow(),
        }
        await SourceInstanceDoc.get_pymongo_collection().replace_one(
            {"_id": f"{announcement.source}/{announcement.instance_id}"}, doc, upsert=True
        )

    async def all(self) -> list[dict[str, Any]]:
        """Each source with its newest subscription schema and the instances whose announcements are live."""
        now = utcnow()
        docs = await SourceInstanceDoc.find_all().sort("+source", "-received_at").to_list()
        out: dict[str, dict[str, Any]] = {}
        for d in docs:
            entry = out.setdefault(
                d.source,
                {"name": d.source, "subscription_schema": orjson.loads(d.subscription_schema_text), "instances": []},
            )
            if d.received_at + timedelta(seconds=d.ttl_s) >= now:
                entry["instances"].append(
                    {
                        "instance_id": d.instance_id,
                        "capacity": d.capacity,
                        "free": d.free,
                        "leases": d.leases,
                        "last_seen": d.received_at,
                    }
                )
        return list(out.values())

    async def schema(self, source: str) -> str | None:
        doc = await SourceInstanceDoc.find(SourceInstanceDoc.source == source).sort("-received_at").first_or_none()
        return None if doc is None else doc.subscription_schema_text

    async def check_items(self, items: dict[str, Subscription]) -> list[dict[str, str]]:
        """Problems (JSON pointers into the unitop body) with the items' sources and parameters."""
        problems: list[dict[str, str]] = []
        schemas: dict[str, str | None] = {}
        egress: list[Coroutine[Any, Any, list[dict[str, str]]]] = []
        check = EgressCheck(self._egress)
        for name, sub in items.items():
            if sub.source not in schemas:
                schemas[sub.source] = await self.schema(sub.source)
            schema_json = schemas[sub.source]
            if schema_json is None:
                problems.append(
                    {
                        "loc": f"/items/{name}/source",
                        "msg": f"source {sub.source!r} has not been announced by any ingest instance",
                    }
                )
                continue
            validator = self._validator(schema_json)
            for v in violations(validator, sub.params, f"/items/{name}/params"):
                problems.append({"loc": v.loc, "msg": v.msg})
            # Where the item's connector would connect, whatever else is wrong with it.
            marks = marked_fields(orjson.loads(schema_json))
            egress.append(check.problems(sub.params, marks, f"/items/{name}/params"))
        for found in await asyncio.gather(*egress):
            problems.extend(found)
        return problems

    def _validator(self, schema_json: str) -> jsonschema_rs.Draft202012Validator:
        key = hashlib.sha256(schema_json.encode()).hexdigest()
        validator = self._validators.get(key)
        if validator is None:
            validator = compile_schema(orjson.loads(schema_json))
            self._validators[key] = validator
        return validator

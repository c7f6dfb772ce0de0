"""The audit log: every administrative change (topics, schema versions, unitops, API keys) with who made it,
when, and the resource before and after. Newest first, in cursor pages.

Unitop views are masked by their sources' schemas already; a source whose schema is not known at the time of the
change leaves its params as stored, so values under credential-like names (`password`, `Authorization`, ...) that
are not secret references are masked here too: the audit log is read by people, kept long, and exported.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel

from tributary_common.secrets import MASK, is_credential_name, reference_name
from tributary_common.timeutil import format_time, utcnow

from . import cursors
from .documents import AuditDoc
from .stored import readable

MAX_DEPTH = 32
Snapshot = dict[str, Any] | BaseModel  # a resource before or after a change


def scrub(value: Any, depth: int = 0) -> Any:
    """`value` with literal values under credential-like keys replaced by `***` (references kept)."""
    if depth > MAX_DEPTH:
        return MASK
    if reference_name(value) is not None:
        return value  # {"secret": "NAME"}: a name, never a value
    if isinstance(value, dict):
        return {
            k: (MASK if is_credential_name(k) and v is not None and reference_name(v) is None else scrub(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [scrub(v, depth + 1) for v in value]
    return value


def _unitop_safe(view: dict[str, Any] | None) -> dict[str, Any] | None:
    if view is None:
        return None
    items = {
        name: {**item, "params": scrub(item.get("params"))} if isinstance(item, dict) else item
        for name, item in (view.get("items") or {}).items()
    }
    return {**view, "items": items}


def _plain(value: Snapshot | None) -> dict[str, Any] | None:
    """A view model as the API shows it (without the fields it left unset); a dict as it is."""
    return value.model_dump(by_alias=True, exclude_unset=True) if isinstance(value, BaseModel) else value


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value, default=str).decode()


def entry_view(doc: AuditDoc) -> dict[str, Any]:
    return {
        "id": doc.id,
        "time": doc.time,
        "actor": doc.actor,
        "action": doc.action,
        "target": doc.target,
        "before": None if doc.before_json is None else orjson.loads(doc.before_json),
        "after": None if doc.after_json is None else orjson.loads(doc.after_json),
    }


class AuditLog:
    async def record(
        self,
        actor: str,
        action: str,
        target: str,
        before: Snapshot | None = None,
        after: Snapshot | None = None,
    ) -> None:
        before, after = _plain(before), _plain(after)
        if action.startswith("unitop."):
            before, after = _unitop_safe(before), _unitop_safe(after)
        now = format_time(utcnow())
        await AuditDoc(
            id=f"{now}-{os.urandom(4).hex()}",
            time=now,
            actor=actor,
            action=action,
            target=target,
            before_json=_json(before),
            after_json=_json(after),
        ).insert()

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None = None,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Newest first; `start` inclusive, `end` exclusive; `action` a full name or a kind (`unitop`)."""
        clauses: list[dict[str, Any]] = []
        if actor is not None:
            clauses.append({"actor": actor})
        if action is not None:
            clauses.append({"action": action} if "." in action else {"action": {"$in": _verbs(action)}})
        if target is not None:
            clauses.append({"target": target})
        if start is not None:
            clauses.append({"time": {"$gte": format_time(start)}})
        if end is not None:
            clauses.append({"time": {"$lt": format_time(end)}})
        if cursor is not None:
            t, id_ = cursors.decode(cursor)
            clauses.append({"$or": [{"time": {"$lt": t}}, {"time": t, "_id": {"$lt": id_}}]})
        query = {"$and": clauses} if clauses else {}
        docs: list[AuditDoc] = []
        async with contextlib.aclosing(readable(AuditDoc, query, [("time", -1), ("_id", -1)])) as found:
            async for doc in found:
                docs.append(doc)
                if len(docs) > limit:
                    break
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = cursors.encode(docs[-1].time, docs[-1].id) if more and docs else None
        return [entry_view(d) for d in docs], nxt


VERBS = ("created", "updated", "deleted", "schema_added")


def _verbs(kind: str) -> list[str]:
    return [f"{kind}.{verb}" for verb in VERBS]

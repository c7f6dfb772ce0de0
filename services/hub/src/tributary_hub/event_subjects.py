"""Latest event per subject, without a write per event: a registry of each topic's subjects (`_id` =
`subject_key`), each with the latest day partition an event of it was written to (`$max`). The recorder writes an
entry only for a subject it has not seen lately, or when the subject reaches a later day: in a steady stream,
about once per subject and day, not a conditional upsert per batch (the most expensive command on FerretDB).

A read visits the topic's partitions newest first (by the catalog's `max_t`) and asks each only for the subjects
that can still be newer there: those registered up to that day or later (a subject's events are all in
partitions up to its `day`) whose newest found so far is not after the partition's last time. With a steady
stream that is one partition. Documents of the `latest` collection an older release wrote (one per subject, a
copy of its newest event) are read too and lose to anything newer.
"""

from __future__ import annotations

import time
from typing import Any

from pymongo.errors import OperationFailure

from tributary_common.mongo import DUPLICATE_KEY

from .event_blocks import events_in
from .event_reads import EventReader, Part, Topic
from .partitions import Partitions, subject_key

RECHECK_S = 60.0  # an entry this process wrote is written again after this (retention may have removed it)
KNOWN_MAX = 100_000


def position(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["time"], doc["_id"]


def _subject_order(doc: dict[str, Any]) -> tuple[bool, str]:
    return doc.get("subject") is not None, doc.get("subject") or ""


class SubjectRegistry:
    """The write side: called with a batch's documents (placed: `tu` and `day` set) before they are inserted,
    so that a reader never misses a subject that has events."""

    def __init__(self, partitions: Partitions) -> None:
        self.partitions = partitions
        self._known: dict[str, tuple[str, float]] = {}  # subject_key -> (day written, when)

    async def register(self, docs: list[dict[str, Any]]) -> None:
        latest: dict[str, dict[str, Any]] = {}
        for doc in docs:
            key = subject_key(doc["tu"], doc.get("subject"))
            if key not in latest or doc["day"] > latest[key]["day"]:
                latest[key] = doc
        now = time.monotonic()
        by_coll: dict[str, list[dict[str, Any]]] = {}
        for key, doc in latest.items():
            known = self._known.get(key)
            if known is not None and known[0] >= doc["day"] and now - known[1] < RECHECK_S:
                continue
            entry = {"tu": doc["tu"], "type": doc["type"], "subject": doc.get("subject"), "key": doc["key"]}
            update = {"$set": entry, "$max": {"day": doc["day"]}}
            by_coll.setdefault(self.partitions.subjects(doc["tu"]).name, []).append(
                {"q": {"_id": key}, "u": update, "upsert": True}
            )
        for name, updates in by_coll.items():
            await self._update(name, updates)
        if len(self._known) > KNOWN_MAX:
            self._known.clear()
        for key, doc in latest.items():
            self._known[key] = (doc["day"], now)

    async def _update(self, name: str, updates: list[dict[str, Any]]) -> None:
        # The command itself: pymongo's bulk_write fails on FerretDB's reply when a statement has an error.
        reply = await self.partitions.db.command("update", name, updates=updates, ordered=False)
        errors = reply.get("writeErrors", [])
        if any(e.get("code") != DUPLICATE_KEY for e in errors):
            raise OperationFailure(str(errors[0].get("errmsg", "")), errors[0].get("code"), reply)
        if errors:  # another process inserted the same entry at the same moment: now it updates it
            again = [updates[e["index"]] for e in errors]
            await self.partitions.db.command("update", name, updates=again, ordered=False)


async def latest(reader: EventReader, topic: Topic, query: dict[str, Any]) -> list[dict[str, Any]]:
    """One event per subject (its newest by position), in subject order, no subject first."""
    partitions = reader.partitions
    fields = {"tu": topic.uid}
    scoped = {"$and": [fields, query]} if query else fields
    registered = await partitions.subjects(topic.uid).find(scoped, {"subject": 1, "day": 1}).to_list()
    days: dict[str | None, str] = {e.get("subject"): e["day"] for e in registered}
    best: dict[str | None, dict[str, Any]] = {}
    for old in await partitions.latest(topic.uid).find(scoped).to_list():  # an older release's copies
        best[old.get("subject")] = {**old, "_id": old["event_id"]}
    if days:
        parts = sorted(await reader.parts([topic], None, None), key=lambda p: p.max_t, reverse=True)
        for part in parts:
            wanted = [s for s, day in days.items() if day >= part.day and _may_be_newer(best.get(s), part)]
            if wanted:
                for doc in await _newest(reader, part, query, wanted):
                    s = doc.get("subject")
                    if s not in best or position(doc) > position(best[s]):
                        best[s] = doc
    return sorted(best.values(), key=_subject_order)


def _may_be_newer(found: dict[str, Any] | None, part: Part) -> bool:
    return found is None or found["time"] <= part.max_t


async def _newest(reader: EventReader, part: Part, query: dict[str, Any], subjects: list[str | None]) -> list[Any]:
    """The newest event of each of `subjects` in one partition."""
    clauses: list[dict[str, Any]] = [{"subject": {"$in": subjects}}, *([query] if query else [])]
    docs = await events_in(reader.partitions, part.topic.uid, part.day, {"$and": clauses})
    newest: dict[str | None, dict[str, Any]] = {}
    for doc in reversed(docs):
        newest.setdefault(doc.get("subject"), doc)
    return list(newest.values())

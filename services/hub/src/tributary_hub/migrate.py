"""`tributary-hub migrate`: re-key event documents recorded before ids were per topic, and move samples stored
one document each into hourly buckets (sample_migration.py).

Old documents have `_id` = the event id and no `eid`; since then `_id` is `<topic>/<id>` (`documents.event_key`)
with the id in `eid`. An old document is still read correctly, but the recorder's duplicate check is the `_id`:
an old id sent again after the upgrade would be recorded a second time. This rewrites every old document to the
new key, batch by batch: insert the re-keyed copies (`ordered=False`; a document already under the new key, from
a resend after the upgrade or an interrupted run, is kept and counts as done), then delete the old documents of
the batch. Never an event without a document:
a crash between the two steps leaves both, and the next run removes the old one.

Idempotent and resumable: it selects only documents without `eid`, in `_id` order from where the run is, so
running it again (after an interruption, or at every deployment) finishes the work or finds none. The hub may
run meanwhile. Only find / insert_many / delete_many: the same on MongoDB and FerretDB.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from tributary_common.mongo import new_client
from tributary_common.mongo_options import ClientOptions

from .documents import EventDoc, event_key
from .sample_migration import SampleMigration, migrate_samples
from .sample_partitions import Layout
from .sample_store import SampleStore

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
OLD = {"eid": {"$exists": False}}


@dataclass
class MigrationReport:
    migrated: int = 0  # re-keyed copies written
    already_there: int = 0  # the re-keyed copy existed (a resend after the upgrade, or an interrupted run)
    skipped: int = 0  # no usable `type`: left as they are (still readable; listed in the log)
    batches: int = 0
    seconds: float = 0.0
    samples: SampleMigration = field(default_factory=SampleMigration)


def rekeyed(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document under its per-topic key, or None when it names no topic."""
    topic, event_id = doc.get("type"), doc.get("_id")
    if not isinstance(topic, str) or not topic or not isinstance(event_id, str) or not event_id:
        return None
    return {**doc, "_id": event_key(topic, event_id), "eid": event_id}


async def migrate_events(collection: AsyncCollection[Any], *, batch_size: int = 1000) -> MigrationReport:
    report = MigrationReport()
    started = time.monotonic()
    last: Any = None
    while True:
        query = OLD if last is None else {"$and": [OLD, {"_id": {"$gt": last}}]}
        docs = await collection.find(query).sort("_id", 1).limit(batch_size).to_list()
        if not docs:
            break
        last = docs[-1]["_id"]
        copies, done = [], []
        for doc in docs:
            copy = rekeyed(doc)
            if copy is None:
                report.skipped += 1
                log.warning("event document %r has no usable type: left as it is", doc.get("_id"))
                continue
            copies.append(copy)
            done.append(doc["_id"])
        if copies:
            written = len(copies)
            try:
                await collection.insert_many(copies, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                others = [e for e in errors if e.get("code") != DUPLICATE_KEY]
                if others:
                    raise  # the old documents stay: nothing is deleted whose copy was not written
                written -= len(errors)
                report.already_there += len(errors)
            report.migrated += written
            # Only now: every copy of this batch is stored.
            await collection.delete_many({"_id": {"$in": done}, "eid": {"$exists": False}})
        report.batches += 1
        log.info(
            "migrate: batch %d: %d re-keyed so far, %d already there, %d skipped",
            report.batches,
            report.migrated,
            report.already_there,
            report.skipped,
        )
    report.seconds = time.monotonic() - started
    return report


async def migrate(
    url: str,
    db: str,
    *,
    batch_size: int,
    timeout_ms: int = 5000,
    options: ClientOptions | None = None,
    layout: Layout = "partitioned",
) -> MigrationReport:
    client = new_client(url, timeout_ms=timeout_ms, options=options)
    try:
        report = await migrate_events(client[db][EventDoc.Settings.name], batch_size=batch_size)
        store = SampleStore(client[db], layout)
        await store.create_indexes()
        report.samples = await migrate_samples(client[db], store, batch_size=batch_size)
        return report
    finally:
        await client.close()


async def run(settings: Any, batch_size: int) -> MigrationReport:
    """The `migrate` command: one line per batch in the log, the totals at the end (also on stdout)."""
    report = await migrate(
        settings.mongodb_url,
        settings.mongodb_db,
        batch_size=batch_size,
        timeout_ms=settings.mongodb_timeout_ms,
        options=settings.mongodb_options(),
        layout=settings.storage_layout,
    )
    sm = report.samples
    summary = (
        f"migrate: {report.migrated} event documents re-keyed, {report.already_there} already there, "
        f"{report.skipped} skipped, in {report.batches} batches, {report.seconds:.1f} s; "
        f"{sm.moved} samples moved into buckets ({sm.added} new), {sm.skipped} skipped"
    )
    log.info(summary)
    print(summary, flush=True)
    return report

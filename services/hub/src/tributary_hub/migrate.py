"""`tributary-hub migrate`: move the events of the single `events` collection of earlier releases into the
partitioned storage (`partitions`, `event_store`), then drop it; and move samples stored one document each into
hourly buckets (sample_migration.py).

One pass over the old collection (FerretDB scans a whole collection per query, so never a query per batch):
each chunk is written through the recorder's own write path (`EventStore.write`: id directory, catalog,
partition, subject registry), so an event already there (resent after the upgrade, or moved by an
interrupted run) is a duplicate and stays single. Documents recorded before ids were per topic (`_id` = the id,
no `eid`) are re-keyed to `<topic>/<id>` on the way. What cannot be moved (no usable `type` or `time`, a topic
that no longer exists, a document the database refuses) is copied to `events_unmigrated` and named in the log.
Only after the whole pass is the old collection dropped: never an event without a document. Idempotent: an
interrupted run leaves the old collection whole and the next run finishes it; once dropped, a run finds none.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError

from tributary_common.mongo import new_client, write_errors
from tributary_common.mongo_options import ClientOptions

from .documents import event_key
from .event_store import EventStore
from .partitions import Layout, Partitions, samples_layout
from .sample_migration import SampleMigration, migrate_currents, migrate_samples
from .sample_store import SampleStore

log = logging.getLogger(__name__)

OLD_EVENTS = "events"
UNMIGRATED = "events_unmigrated"


@dataclass
class MigrationReport:
    moved: int = 0  # written into their partitions
    already_there: int = 0  # a copy was there already (resent after the upgrade, or an interrupted run)
    kept_aside: int = 0  # copied to `events_unmigrated` (listed in the log)
    batches: int = 0
    seconds: float = 0.0
    samples: SampleMigration = field(default_factory=SampleMigration)


def rekeyed(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The document under its per-topic key with `eid`, or None when it names no topic or has no time."""
    topic, time_, event_id = doc.get("type"), doc.get("time"), doc.get("eid") or doc.get("_id")
    if not (isinstance(topic, str) and topic and isinstance(event_id, str) and event_id and isinstance(time_, str)):
        return None
    return {**doc, "_id": event_key(topic, event_id), "eid": event_id}


async def _keep_aside(aside: AsyncCollection[Any], docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        log.warning("event document %r cannot be moved: kept in %s", doc.get("_id"), UNMIGRATED)
    try:
        await aside.insert_many(docs, ordered=False)
    except BulkWriteError as exc:  # already kept aside by an interrupted run
        if write_errors(exc)[1]:
            raise


async def _move(store: EventStore, aside: AsyncCollection[Any], docs: list[dict[str, Any]], r: MigrationReport) -> None:
    copies, originals, left = [], [], []
    for doc in docs:
        copy = rekeyed(doc)
        if copy is None:
            left.append(doc)
        else:
            copies.append(copy)
            originals.append(doc)
    outcome = await store.write(copies)
    left += [originals[i] for i in [*outcome.orphans, *outcome.refused]]
    r.already_there += len(outcome.duplicates)
    r.moved += len(copies) - len(outcome.duplicates) - len(outcome.orphans) - len(outcome.refused)
    if left:
        await _keep_aside(aside, left)
        r.kept_aside += len(left)
    r.batches += 1
    log.info(
        "migrate: batch %d: %d moved so far, %d already there, %d kept aside",
        r.batches,
        r.moved,
        r.already_there,
        r.kept_aside,
    )


async def move_events(store: EventStore, *, batch_size: int = 1000) -> MigrationReport:
    report = MigrationReport()
    started = time.monotonic()
    db = store.partitions.db
    if OLD_EVENTS in await db.list_collection_names():
        old, chunk = db[OLD_EVENTS], []
        async for doc in old.find({}).batch_size(batch_size):
            chunk.append(doc)
            if len(chunk) >= batch_size:
                await _move(store, db[UNMIGRATED], chunk, report)
                chunk = []
        if chunk:
            await _move(store, db[UNMIGRATED], chunk, report)
        # Only now: every document is in a partition or kept aside.
        await db.drop_collection(OLD_EVENTS)
    report.seconds = time.monotonic() - started
    return report


async def migrate(
    url: str,
    db: str,
    layout: Layout,
    *,
    batch_size: int,
    timeout_ms: int = 5000,
    options: ClientOptions | None = None,
) -> MigrationReport:
    client = new_client(url, timeout_ms=timeout_ms, options=options)
    try:
        partitions = Partitions(client[db], layout)
        await partitions.prepare()
        report = await move_events(EventStore(partitions, client[db]["topics"]), batch_size=batch_size)
        store = SampleStore(client[db], samples_layout(layout))
        await store.create_indexes()
        report.samples = await migrate_samples(client[db], store, batch_size=batch_size)
        report.samples.currents = await migrate_currents(client[db], store, batch_size=batch_size)
        return report
    finally:
        await client.close()


async def run(settings: Any, batch_size: int) -> MigrationReport:
    """The `migrate` command: one line per batch in the log, the totals at the end (also on stdout)."""
    report = await migrate(
        settings.mongodb_url,
        settings.mongodb_db,
        settings.storage_layout,
        batch_size=batch_size,
        timeout_ms=settings.mongodb_timeout_ms,
        options=settings.mongodb_options(),
    )
    sm = report.samples
    summary = (
        f"migrate: {report.moved} events moved into partitions, {report.already_there} already there, "
        f"{report.kept_aside} kept aside in {UNMIGRATED}, in {report.batches} batches, {report.seconds:.1f} s; "
        f"{sm.moved} samples moved into buckets ({sm.added} new), {sm.skipped} skipped; "
        f"{sm.currents} current values moved into shards"
    )
    log.info(summary)
    print(summary, flush=True)
    return report

"""Samples staged, then merged into their buckets in a loop (FerretDB's layouts).

Written straight into buckets, a recorder batch costs FerretDB about seven commands a sid in it (the bucket read,
replaced and read back, two summary documents each updated and read back), 8-25 ms a sid whatever its samples: a
batch of one sample from each of 1,000 sids took 15-25 s, so sids sending a sample a second outran the recorder past
~250 of them. Here the samples recorder inserts each batch as one or a few staging documents and acks it (a write
like any other), and a merge loop in the same process writes what is staged into the buckets through
`SampleStore.write`, many batches at once, then deletes exactly the documents it merged: the per-sid cost is paid
once a merge rather than once a batch, so the recorder keeps up at any number of sids, and a sample is readable one
merge after it is staged. A sid with many samples in a batch (a bulk load) is written at once, as before: its cost a
sid is spread over them already.

Crash-safety as before: a merge stopped before its delete is merged again, which adds nothing (writes are
idempotent, the first sample stored at a time wins). Each process merges what it staged, and what any process
staged over `orphan_s` ago (one that stopped before merging); two processes merging the same document waste work
but count nothing twice. MongoDB (`indexed`) has the indexes that make direct writes cheap, and writes directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from bson import ObjectId
from prometheus_client import Gauge, Histogram
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import PyMongoError

from tributary_common.backoff import Backoff
from tributary_common.tasks import cancel_and_wait
from tributary_common.telemetry import tracer

from .batch_writer import RETRIES, document_refusal
from .sample_buckets import pack_points, unpack_points
from .sample_store import SampleStore
from .series import Point

log = logging.getLogger("tributary_hub.recorder")
_tracer = tracer("tributary_hub.sample_staging")

STAGING = "sample_staging"
DOC_BYTES = 8 * 1024 * 1024  # a staging document's packed samples: half MongoDB's 16 MiB limit
IDLE_S = 1.0  # an idle loop looks again this often (a stage wakes it at once)
ADOPT_EVERY_S = 10.0  # how often the loop also looks for what stopped processes left staged
MERGE_BYTES = 32 * 1024 * 1024  # packed samples a merge reads at most (texts unpack larger than numbers)
STAGE_BELOW = 100  # a sid's samples in a recorder batch below which they are staged (`staged_apart`)

STAGED = Gauge("tributary_hub_samples_staged", "Samples this process staged and has not merged into buckets yet")
MERGE_SECONDS = Histogram(
    "tributary_hub_sample_merge_seconds",
    "Time to merge staged samples into their buckets",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60),
)

Entry = tuple[str, Sequence[Point], str]  # one message's samples: sid, points, and its routing key (dead letters)
Merged = Callable[[int, int], None]  # (samples merged, of them new)
Refused = Callable[[Entry, BaseException], Awaitable[None]]  # an entry the database refused at merge time


def staged_apart(entries: Sequence[Entry]) -> tuple[list[Entry], list[Entry]]:
    """(to write now, to stage): a sid with `STAGE_BELOW` samples or more in the batch pays its cost a sid over
    enough of them to be written at once; staging it too would only add its packing, insert, read and delete
    (bulk messages of a thousand samples: 110k samples/s staged against 136k direct)."""
    per_sid: dict[str, int] = defaultdict(int)
    for sid, points, _ in entries:
        per_sid[sid] += len(points)
    now = [e for e in entries if per_sid[e[0]] >= STAGE_BELOW]
    return now, [e for e in entries if per_sid[e[0]] < STAGE_BELOW]


def _entry_fault(exc: BaseException) -> bool:
    """Whether a failed merge may be one entry's fault (isolate it) rather than the database being away (retry)."""
    return document_refusal(exc) or not isinstance(exc, PyMongoError)


def _packed(points: Sequence[Point]) -> Iterator[tuple[bytes, int]]:
    """The points as blobs of at most `DOC_BYTES` (halved until they fit; one point always fits: a text value is
    at most `sample_value_max_bytes`, 8 MiB), each with its count."""
    blob = pack_points(points, 0)  # times kept whole (offsets from 0)
    if len(blob) <= DOC_BYTES or len(points) == 1:
        yield blob, len(points)
        return
    half = len(points) // 2
    yield from _packed(points[:half])
    yield from _packed(points[half:])


def staged_docs(writer: str, entries: Sequence[Entry], at: float) -> list[dict[str, Any]]:
    """The entries as staging documents, in order, each under ~`DOC_BYTES`: `s` the sids, `d` their packed points
    (orjson columns: int64, booleans, NaN and texts keep their types), `k` their routing keys, `n` the samples, `w`
    the writer."""
    docs: list[dict[str, Any]] = []
    sids: list[str] = []
    blobs: list[bytes] = []
    keys: list[str] = []
    size = count = 0

    def cut() -> None:
        docs.append({"_id": ObjectId(), "w": writer, "at": at, "n": count, "s": sids, "d": blobs, "k": keys})

    for sid, points, key in entries:
        for blob, n in _packed(points):
            if blobs and size + len(blob) > DOC_BYTES:
                cut()
                sids, blobs, keys, size, count = [], [], [], 0, 0
            sids.append(sid)
            blobs.append(blob)
            keys.append(key)
            size += len(blob) + len(sid) + len(key)
            count += n
    if blobs:
        cut()
    return docs


def staged_entries(doc: dict[str, Any]) -> list[Entry]:
    return [(s, unpack_points(d, 0), k) for s, d, k in zip(doc["s"], doc["d"], doc["k"], strict=True)]


class SampleStaging:
    def __init__(
        self,
        store: SampleStore,
        *,
        merged: Merged,
        refused: Refused,
        merge_samples: int = 200_000,
        staged_max: int = 2_000_000,
        orphan_s: float = 60.0,
        retry_min_s: float = 0.2,
        retry_max_s: float = 5.0,
    ) -> None:
        self.store = store
        self.coll: AsyncCollection[Any] = store.db[STAGING]
        self.writer = uuid.uuid4().hex
        self.merged = merged
        self.refused = refused
        self.merge_samples = merge_samples  # at most this many samples a merge (and its memory)
        self.staged_max = staged_max  # staging waits while this process has this many unmerged
        self.orphan_s = orphan_s
        self.retry = (retry_min_s, retry_max_s)
        self.pending = 0  # samples this process staged and has not merged (an estimate: staging races merging)
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._adopted_at = 0.0

    async def stage(self, entries: Sequence[Entry]) -> None:
        """Insert the entries as staging documents (waiting first while too much is staged and not merged)."""
        while self.pending >= self.staged_max:
            self._room.clear()
            await self._room.wait()
        docs = staged_docs(self.writer, entries, time.time())
        if docs:
            await self.coll.insert_many(docs, ordered=True)
            self._note_pending(sum(d["n"] for d in docs))
            self._wake.set()

    def _note_pending(self, delta: int) -> None:
        self.pending = max(0, self.pending + delta)
        STAGED.set(self.pending)
        if self.pending < self.staged_max:
            self._room.set()

    async def merge_once(self, *, adopt: bool = False) -> int:
        """Merge up to `merge_samples` staged samples, oldest first: this process's, and with `adopt` also what any
        process staged over `orphan_s` ago. Returns how many documents were merged."""
        query: dict[str, Any] = {"w": self.writer}
        if adopt:
            query = {"$or": [query, {"at": {"$lt": time.time() - self.orphan_s}}]}
        docs: list[dict[str, Any]] = []
        samples = size = 0
        cursor = self.coll.find(query).sort("_id", 1)
        try:
            async for doc in cursor:
                docs.append(doc)
                samples += int(doc["n"])
                size += sum(map(len, doc["d"]))
                if samples >= self.merge_samples or size >= MERGE_BYTES:
                    break
        finally:
            await cursor.close()
        if not docs:  # nothing of ours left (another process may have adopted it): we owe nothing
            self._note_pending(-self.pending)
            return 0
        started = time.perf_counter()
        with _tracer.start_as_current_span("merge samples") as span:
            span.set_attribute("tributary.samples", samples)
            added = await self._write([e for doc in docs for e in staged_entries(doc)])
            await self.coll.delete_many({"_id": {"$in": [d["_id"] for d in docs]}})
        MERGE_SECONDS.observe(time.perf_counter() - started)
        self._note_pending(-sum(int(d["n"]) for d in docs if d["w"] == self.writer))
        self.merged(samples, added)
        return len(docs)

    async def _write(self, entries: list[Entry]) -> int:
        """Write the entries; if one spoils the write (the database refuses it, a bucket grown past 16 MiB, or an
        error not the database's: a bug), each sid's alone, then each entry of a failing sid alone, and what still
        fails goes to `refused` (the dead letters): one message must not hold up every merge after it. The database
        being away is retried whole (raised to `run`)."""
        try:
            return await self._store(entries)
        except Exception as exc:
            if not _entry_fault(exc):
                raise
            if not document_refusal(exc):
                log.exception("samples merge: an unexpected error; writing sid by sid to find its message")
        by_sid: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_sid[entry[0]].append(entry)
        added = 0
        for group in by_sid.values():
            try:
                added += await self._store(group)
                continue
            except Exception as exc:
                if not _entry_fault(exc):
                    raise
            for entry in group:
                try:
                    added += await self._store([entry])
                except Exception as exc:
                    if not _entry_fault(exc):
                        raise
                    await self.refused(entry, exc)
        return added

    async def _store(self, entries: list[Entry]) -> int:
        return await self.store.write([(sid, points) for sid, points, _ in entries])

    async def run(self) -> None:
        """Merge whenever something is staged, until cancelled; retried with backoff while the database is away."""
        backoff = Backoff(*self.retry, jitter=False)
        while True:
            self._wake.clear()  # before looking: a stage meanwhile wakes the next wait
            adopt = time.monotonic() - self._adopted_at >= ADOPT_EVERY_S
            try:
                merged = await self.merge_once(adopt=adopt)
            except Exception as exc:
                RETRIES.labels("samples").inc()
                delay = backoff.next_delay()
                if isinstance(exc, PyMongoError):
                    log.warning("samples merge failed (%s); retrying in %.1f s", type(exc).__name__, delay)
                else:
                    log.exception("samples merge failed; retrying in %.1f s", delay)
                await asyncio.sleep(delay)
                continue
            backoff.failures = 0
            if adopt:
                self._adopted_at = time.monotonic()
            if not merged:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_S)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="samples-merge")

    async def stop(self, timeout_s: float) -> None:
        """Stop the loop, then merge what this process staged within `timeout_s` (what is left, another process
        adopts after `orphan_s`)."""
        await cancel_and_wait(self._task)
        self._task = None

        async def drain() -> None:
            while await self.merge_once():
                pass

        try:
            await asyncio.wait_for(drain(), max(0.0, timeout_s))
        except (TimeoutError, PyMongoError) as exc:  # nothing is lost: merged later
            log.warning(
                "samples merge at stop: %s; %d samples left staged for another process",
                type(exc).__name__,
                self.pending,
            )

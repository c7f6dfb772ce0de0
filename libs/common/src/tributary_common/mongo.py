"""MongoDB start-up (beanie on pymongo's async client, with the replica set's write and read options) and one
retention mechanism for MongoDB and FerretDB.

Retention is per document: each document carries an `expire_at` time. Where the server has TTL indexes
(MongoDB) an index with `expireAfterSeconds=0` on that field deletes them; where it has none (FerretDB answers
"not implemented") a sweeper deletes expired documents periodically. Which one runs is detected at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, OperationFailure

from .mongo_options import ClientOptions
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

RetentionMode = Literal["ttl-index", "sweeper"]
TTL_INDEX_NAME = "retention_ttl"
DUPLICATE_KEY = 11000  # the server's code for a unique key (`_id`) already taken


def write_errors(exc: BulkWriteError) -> tuple[list[int], dict[int, str]]:
    """Of a bulk insert: the indexes already stored (a duplicate key), and those the server refused, with why."""
    duplicates: list[int] = []
    refused: dict[int, str] = {}
    for e in exc.details.get("writeErrors", []):
        if e.get("code") == DUPLICATE_KEY:
            duplicates.append(e["index"])
        else:
            refused[e["index"]] = str(e.get("errmsg", ""))
    return duplicates, refused


def new_client(url: str, *, timeout_ms: int = 5000, options: ClientOptions | None = None) -> AsyncMongoClient[Any]:
    """The one way a service makes a client: timezone-aware datetimes, bounded server selection, `options`."""
    kw = (options or ClientOptions()).kwargs()
    return AsyncMongoClient(url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True, **kw)


async def connect(
    url: str,
    db: str,
    models: Sequence[type[Document]],
    timeout_ms: int = 5000,
    options: ClientOptions | None = None,
) -> AsyncMongoClient[Any]:
    """A client (`new_client`) with beanie initialised on `db` for `models`, their indexes created.

    Indexes are created one per command: FerretDB 1.24 closes the connection when one `createIndexes` command
    re-creates several indexes that already exist (what beanie sends at every start after the first), so a
    service restarting on an existing database would never start.
    """
    client = new_client(url, timeout_ms=timeout_ms, options=options)
    try:
        await init_beanie(database=client[db], document_models=list(models), skip_indexes=True)
        for model in models:
            indexes: list[IndexModel] = list(getattr(model.Settings, "indexes", []))
            collection = model.get_pymongo_collection()
            for index in indexes:
                await collection.create_indexes([index])
    except BaseException:
        await client.close()
        raise
    return client


async def ping(client: AsyncMongoClient[Any]) -> None:
    await client.admin.command("ping")


class Retention:
    """Deletes documents whose `field` (a datetime) is in the past, by TTL index or by sweeping."""

    def __init__(
        self, collection: AsyncCollection[Any], field: str = "expire_at", sweep_interval_s: float = 60
    ) -> None:
        self.collection = collection
        self.field = field
        self.sweep_interval_s = sweep_interval_s
        self.mode: RetentionMode | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> RetentionMode:
        try:
            await self.collection.create_index(self.field, expireAfterSeconds=0, name=TTL_INDEX_NAME)
            self.mode = "ttl-index"
        except OperationFailure as exc:
            # FerretDB: "not implemented". Sweep instead, with a plain index so that the sweep is cheap.
            log.info("TTL index refused on %s (%s): sweeping instead", self.collection.name, exc.details)
            await self.collection.create_index(self.field, name=f"{self.field}_sweep")
            self.mode = "sweeper"
            await self.sweep_once()
            self._task = asyncio.create_task(self._sweep_forever(), name=f"retention-{self.collection.name}")
        return self.mode

    async def sweep_once(self, now: datetime | None = None) -> int:
        result = await self.collection.delete_many({self.field: {"$lt": now or datetime.now(UTC)}})
        return int(result.deleted_count)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                deleted = await self.sweep_once()
                if deleted:
                    log.info("retention swept %d documents from %s", deleted, self.collection.name)
            except Exception:
                log.warning("retention sweep of %s failed", self.collection.name, exc_info=True)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

"""Connecting to MongoDB (or FerretDB) with the hub's documents and indexes.

Indexes are created one per command: FerretDB 1.24 closes the connection when one `createIndexes` command
re-creates several indexes that already exist (what beanie sends at every start after the first), so a hub
restarting on an existing database would never start.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from beanie import Document, init_beanie
from pymongo import AsyncMongoClient, IndexModel


async def connect(url: str, db: str, models: Sequence[type[Document]], timeout_ms: int = 5000) -> AsyncMongoClient[Any]:
    client: AsyncMongoClient[Any] = AsyncMongoClient(url, serverSelectionTimeoutMS=timeout_ms, tz_aware=True)
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

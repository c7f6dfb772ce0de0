"""What the hub stored of samples, read from another process the way the hub reads them (hourly buckets:
`tributary_hub.sample_store`), for tests that check recording end to end."""

from __future__ import annotations

from typing import Any

from pymongo import AsyncMongoClient

from tests.support import platform
from tributary_hub.sample_store import SampleStore
from tributary_hub.sample_view import SampleView


async def stored_samples(db: str, sid: str | None = None, layout: str = "partitioned") -> list[dict[str, Any]]:
    """`{sid, t (text), v, q}` of every stored sample (of `sid`), in `(sid, t)` order."""
    client: AsyncMongoClient[Any] = AsyncMongoClient(platform.mongodb_url())
    try:
        view = SampleView(SampleStore(client[db], layout))  # type: ignore[arg-type]
        return await view.find({} if sid is None else {"sid": sid}).to_list()
    finally:
        await client.close()

"""A batch's current values: one at a time on FerretDB, whose SQLite takes one writer per database (a thousand sids'
updates sent at once failed with SQLITE_BUSY, and once crashed FerretDB), at once on MongoDB's `indexed` layout;
either way each sid keeps its newest sample."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.hub.test_sample_store import T0, store  # noqa: F401  (the fixture)
from tributary_hub.partitions import Layout
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import Point


class InFlight:
    """The store's `current` collection, counting the most `update_one` calls in flight at once."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.now, self.most = inner, 0, 0

    async def update_one(self, *args: Any, **kwargs: Any) -> Any:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await asyncio.sleep(0)  # a turn, in which another update sent at once would start
            return await self.inner.update_one(*args, **kwargs)
        finally:
            self.now -= 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_a_batch_of_many_sids_sets_each_current_value(store: SampleStore) -> None:  # noqa: F811
    counted = InFlight(store.current)
    store.current = counted  # type: ignore[assignment]
    sids = [f"plant.u{k}" for k in range(120)]
    newest = {sid: Point(T0 + 1000 + k, float(k) + 0.5) for k, sid in enumerate(sids)}
    await store.write([(sid, [Point(T0 + k, float(k)), newest[sid]]) for k, sid in enumerate(sids)])
    assert await store.latest(sids) == newest
    assert counted.most == (1 if store.partitions.layout is not Layout.INDEXED else len(sids))
    # An older sample of each afterwards leaves the newest in place.
    await store.write([(sid, [Point(T0 + 500 + k, -1.0)]) for k, sid in enumerate(sids)])
    assert await store.latest(sids) == newest

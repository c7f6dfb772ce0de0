"""`partitions.by_ids` on the real FerretDB, in every layout: the documents with the given `_id`s that exist, with
the projection, whether it looks them up one by one (a few ids, where `$in` decodes every document) or at once."""

from __future__ import annotations

import pytest

from tests.hub.test_event_storage import Storage, storage  # noqa: F401  (the fixture)
from tributary_hub.partitions import EQ_LOOKUPS_MAX, by_ids


@pytest.mark.parametrize("wanted", [0, 1, 3, EQ_LOOKUPS_MAX, EQ_LOOKUPS_MAX + 1, 40])
async def test_the_documents_that_exist_with_the_projection(storage: Storage, wanted: int) -> None:  # noqa: F811
    coll = storage.partitions.db["things"]
    await coll.insert_many([{"_id": f"k{n}", "day": f"d{n}", "blk": f"b{n}", "other": n} for n in range(100)])
    ids = [f"k{n}" for n in range(0, 2 * wanted, 2)] + ["missing"]
    found = await by_ids(coll, ids, {"day": 1}, storage.partitions.layout)
    assert sorted(found, key=lambda d: int(d["_id"][1:])) == [
        {"_id": f"k{n}", "day": f"d{n}"} for n in range(0, 2 * wanted, 2)
    ]

"""A batch of many sids, against the real FerretDB: the writes of sids with partitions new to the catalog go one at
a time (FerretDB makes a collection at its first write; a thousand made at once took minutes and crashed it), the
others several at once, also in a process restarted (its first batch)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.hub.test_sample_store import T0, everything, store  # noqa: F401  (the fixture)
from tributary_hub import sample_writes
from tributary_hub.partitions import Layout
from tributary_hub.sample_days import prepare_day, seconds_until_ahead
from tributary_hub.sample_partitions import DAY_US, KINDS, LAYOUTS
from tributary_hub.sample_store import SampleStore
from tributary_hub.series import HOUR_US, Point


class InFlight:
    def __init__(self) -> None:
        self.now, self.most = 0, 0

    def wrap(self, fn: Any) -> Any:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.now += 1
            self.most = max(self.most, self.now)
            try:
                return await fn(*args, **kwargs)
            finally:
                self.now -= 1

        return counted


@pytest.mark.parametrize("step", ["write_hour", "write_day"])
async def test_new_partitions_are_made_one_at_a_time(
    store: SampleStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    step: str,
) -> None:
    counted = InFlight()
    monkeypatch.setattr(sample_writes, step, counted.wrap(getattr(sample_writes, step)))
    sids = [f"m.s{k}" for k in range(40)]
    await store.write([(sid, [Point(T0, 1.0)]) for sid in sids])  # every sid's partitions new
    dedicated = store.partitions.layout is not Layout.INDEXED
    assert counted.most == (1 if dedicated else store.concurrency)
    counted.most = 0
    await store.write([(sid, [Point(T0 + 1, 2.0)]) for sid in sids])  # the same partitions: several at once
    assert counted.most == store.concurrency
    counted.most = 0
    # A new sid and a new hour among known ones: only those alone.
    await store.write([(sid, [Point(T0 + 2, 3.0)]) for sid in sids] + [("m.new", [Point(T0 + HOUR_US, 4.0)])])
    assert counted.most == store.concurrency
    for sid in sids:
        assert await everything(store, sid) == [Point(T0, 1.0), Point(T0 + 1, 2.0), Point(T0 + 2, 3.0)]
    assert await everything(store, "m.new") == [Point(T0 + HOUR_US, 4.0)]
    # A process restarted: the catalog lists the partitions (their collections exist), so several at once.
    counted.most = 0
    restarted = SampleStore(store.db, store.partitions.layout)
    await restarted.write([(sid, [Point(T0 + 3, 5.0)]) for sid in sids])
    assert counted.most == store.concurrency
    assert await restarted.count(sids[0]) == 4


def test_the_next_day_is_prepared_within_the_last_hour_of_the_one_before() -> None:
    midnight = 1_767_225_600  # 2026-01-01T00:00:00Z
    assert seconds_until_ahead(midnight) == 23 * 3600
    assert seconds_until_ahead(midnight + 22 * 3600 + 1800) == 1800
    assert seconds_until_ahead(midnight + 23 * 3600) == 0.0
    assert seconds_until_ahead(midnight + 23 * 3600 + 1) == 0.0  # within it: at once
    assert seconds_until_ahead(midnight + 86_400) == 23 * 3600  # the new day: its own last hour


@pytest.mark.parametrize("store", [x for x in LAYOUTS if x is not Layout.INDEXED], indirect=True)  # one per kind there
async def test_a_day_prepared_ahead_is_written_several_sids_at_once(
    store: SampleStore,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sids = [f"d.s{k}" for k in range(12)]
    await store.write([(sid, [Point(T0, 1.0)]) for sid in sids])  # T0's day, 2026-01-31
    await store.write([("other", [Point(T0 - DAY_US, 1.0)])])  # a sid quiet today: not prepared
    tomorrow = T0 - T0 % DAY_US + DAY_US  # and a new month: every kind's partition is new
    assert await prepare_day(store, tomorrow) == 3 * len(sids)
    assert await prepare_day(store, tomorrow) == 0  # once
    names = set(await store.db.list_collection_names())
    assert all(store.partitions.holding(kind, sid, tomorrow) in names for sid in sids for kind in KINDS)
    assert store.partitions.holding("raw", "other", tomorrow) not in names
    counted = InFlight()
    monkeypatch.setattr(sample_writes, "write_hour", counted.wrap(sample_writes.write_hour))
    restarted = SampleStore(store.db, store.partitions.layout)  # another process, at midnight
    await restarted.write([(sid, [Point(tomorrow + 5, 2.0)]) for sid in sids])
    assert counted.most == store.concurrency  # not one at a time
    assert [await everything(restarted, sid) for sid in sids[:1]] == [[Point(T0, 1.0), Point(tomorrow + 5, 2.0)]]

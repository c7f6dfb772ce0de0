"""`samples.history` pages over a `SeriesStore`: paging through to the end gives every sample of the sids in
`(since, until]` exactly once, in `(t, sid)` order, whatever the page size (reference: a sort of all of them)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.series import MemorySeriesStore
from tributary_hub.historian.catchup import Position, sample_page
from tributary_hub.series import Point

SIDS = ["a", "b", "c"]


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.sampled_from(SIDS), st.lists(st.integers(0, 40), unique=True, max_size=15)),
    st.integers(1, 7),
    st.one_of(st.none(), st.integers(-1, 40)),
    st.one_of(st.none(), st.integers(0, 41)),
    st.lists(st.sampled_from([*SIDS, "z"]), min_size=1, max_size=4),
)
def test_pages_give_every_sample_once_in_order(
    times: dict[str, list[int]], limit: int, since: int | None, until: int | None, sids: list[str]
) -> None:
    store = MemorySeriesStore({sid: [Point(t, f"{sid}{t}") for t in ts] for sid, ts in times.items()}, chunk=2)
    expected = sorted(
        (t, sid)
        for sid in set(sids)
        for t in times.get(sid, [])
        if (since is None or t > since) and (until is None or t <= until)
    )

    async def read_all() -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        position: Position | None = None
        for _ in range(len(expected) + 2):
            page, position = await sample_page(store, sids, since=since, until=until, position=position, limit=limit)
            assert len(page) <= limit
            assert all(p.v == f"{sid}{p.t}" for sid, p in page)
            got.extend((p.t, sid) for sid, p in page)
            if position is None:
                return got
        raise AssertionError("paging did not end")

    assert asyncio.run(read_all()) == expected

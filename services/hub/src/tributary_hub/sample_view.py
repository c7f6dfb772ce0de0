"""`SampleView`: the few reads of the old one-document-per-sample collection (`count_documents`, `find` by sid in
time order, `find_one`), answered from the buckets, for tools and tests written against that collection. Filters:
`{}` or `{"sid": <sid>}`; documents `{sid, t (text), v, q}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .sample_buckets import time_text

if TYPE_CHECKING:
    from .sample_store import SampleStore


class SampleView:
    def __init__(self, store: SampleStore) -> None:
        self.store = store

    async def _sids(self, query: dict[str, Any]) -> list[str]:
        unknown = set(query) - {"sid"}
        if unknown or not isinstance(query.get("sid", ""), str):
            raise ValueError(f"a sample view filters by one sid only, not {query}")
        return [query["sid"]] if "sid" in query else await self.store.sids()

    async def count_documents(self, query: dict[str, Any]) -> int:
        return sum([await self.store.count(sid) for sid in await self._sids(query)])

    def find(self, query: dict[str, Any]) -> Found:
        return Found(self, query)

    async def find_one(self, query: dict[str, Any]) -> dict[str, Any] | None:
        docs = await self.find(query).to_list()
        return docs[0] if docs else None


class Found:
    def __init__(self, view: SampleView, query: dict[str, Any]) -> None:
        self.view = view
        self.query = query

    def sort(self, *_: Any) -> Found:
        return self  # always `(sid, t)` ascending

    async def to_list(self) -> list[dict[str, Any]]:
        docs: list[dict[str, Any]] = []
        for sid in await self.view._sids(self.query):
            async for chunk in self.view.store.points(sid):
                docs += [{"sid": sid, "t": time_text(p.t), "v": p.v, "q": p.q} for p in chunk]
        return docs

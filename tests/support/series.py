"""`SeriesStore` in memory, for testing the historian's math without services: summaries computed from the raw
points with `series.summarize`, chunks of a few points so that chunk edges fall everywhere."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Sequence

from tributary_hub.series import Point, Summary, SummaryColumns, summarize


class MemorySeriesStore:
    def __init__(self, series: dict[str, list[Point]], chunk: int = 3) -> None:
        self.series = {sid: sorted(points, key=lambda p: p.t) for sid, points in series.items()}
        self.chunk = chunk
        self.reads: list[tuple[str, int | None]] = []  # (kind, resolution) of each range read

    def _range(self, sid: str, start: int | None, end: int | None) -> list[Point]:
        points = self.series.get(sid, [])
        times = [p.t for p in points]
        lo = 0 if start is None else bisect.bisect_left(times, start)
        hi = len(points) if end is None else bisect.bisect_left(times, end)
        return points[lo:hi]

    async def points(
        self, sid: str, start: int | None = None, end: int | None = None, *, descending: bool = False
    ) -> AsyncIterator[list[Point]]:
        self.reads.append(("points", None))
        selected = self._range(sid, start, end)
        if descending:
            selected = selected[::-1]
        for i in range(0, len(selected), self.chunk):
            yield selected[i : i + self.chunk]

    async def latest(self, sids: Sequence[str]) -> dict[str, Point]:
        return {sid: self.series[sid][-1] for sid in sids if self.series.get(sid)}

    async def at_or_before(self, sid: str, t: int) -> Point | None:
        before = self._range(sid, None, t + 1)
        return before[-1] if before else None

    async def at_or_after(self, sid: str, t: int) -> Point | None:
        after = self._range(sid, t, None)
        return after[0] if after else None

    async def summaries(self, sid: str, start: int, end: int, resolution: int) -> AsyncIterator[SummaryColumns]:
        assert start % resolution == 0 and end % resolution == 0, "summaries are read aligned"
        self.reads.append(("summaries", resolution))
        out: list[Summary] = []
        for span in range(start, end, resolution):
            s = summarize(self._range(sid, span, span + resolution), span, span + resolution)
            if s is not None:
                out.append(s)
        for i in range(0, len(out), self.chunk):
            yield SummaryColumns.of(out[i : i + self.chunk])

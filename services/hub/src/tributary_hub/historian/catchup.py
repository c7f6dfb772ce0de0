"""Pages of several sids' samples in `(t, sid)` order over a `SeriesStore`: what `samples.history` (the stream's
unitop catch-up) answers. Each sid is read only up to what can still make the page, and at most about two pages
of samples are held at once."""

from __future__ import annotations

from collections.abc import Sequence

from ..series import Point, SeriesStore
from .reads import closing

Position = tuple[int, str]  # (t in µs, sid): a page continues strictly after it


def _start(sid: str, since: int | None, position: Position | None) -> int | None:
    lo = None if since is None else since + 1  # since is exclusive
    if position is not None:
        t, after_sid = position
        at = t if sid > after_sid else t + 1
        lo = at if lo is None else max(lo, at)
    return lo


async def sample_page(
    store: SeriesStore,
    sids: Sequence[str],
    *,
    since: int | None,
    until: int | None,
    position: Position | None,
    limit: int,
) -> tuple[list[tuple[str, Point]], Position | None]:
    """Up to `limit` `(sid, point)` with `since < t <= until` after `position`, and the position to continue
    from (None: nothing more)."""
    best: list[tuple[int, str, Point]] = []
    for sid in sorted(set(sids)):
        end = None if until is None else until + 1
        if len(best) > limit:  # nothing later than the page's last candidate can make it
            end = best[-1][0] + 1 if end is None else min(end, best[-1][0] + 1)
        got: list[Point] = []
        async with closing(store.points(sid, _start(sid, since, position), end)) as chunks:
            async for chunk in chunks:
                got.extend(chunk[: limit + 1 - len(got)])
                if len(got) > limit:
                    break
        best = sorted(best + [(p.t, sid, p) for p in got], key=lambda c: (c[0], c[1]))[: limit + 1]
    page = best[:limit]
    more = len(best) > limit and bool(page)
    return [(sid, p) for _, sid, p in page], ((page[-1][0], page[-1][1]) if more else None)

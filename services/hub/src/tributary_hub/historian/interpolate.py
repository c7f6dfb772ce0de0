"""Values at given times from the samples around them.

A number between two numeric samples is interpolated linearly, unless the item is `stepped`; strings, booleans
and a number next to a non-number hold the earlier sample's value (step). After the last sample its value is
held. The quality is the earlier sample's. Before the first sample there is no value: `None` with quality
`no_data`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..series import Point, is_number

NO_DATA = "no_data"


def value_between(before: Point | None, after: Point | None, t: int, stepped: bool) -> Point:
    """The value at `t` given the last sample at or before it and the first one after it."""
    if before is None:
        return Point(t, None, NO_DATA)
    if before.t == t or stepped or after is None or not (is_number(before.v) and is_number(after.v)):
        return Point(t, before.v, before.q)
    frac = (t - before.t) / (after.t - before.t)
    return Point(t, before.v + (after.v - before.v) * frac, before.q)


def interpolate(
    before: Point | None, points: Iterable[Point], times: Iterable[int], *, stepped: bool = False
) -> Iterator[Point]:
    """The value at each of `times` (ascending). `before` is the last sample earlier than the first time;
    `points` the samples from the first time on, ascending, reaching past the last time when there are any."""
    it = iter(points)
    nxt = next(it, None)
    for t in times:
        while nxt is not None and nxt.t <= t:
            before, nxt = nxt, next(it, None)
        yield value_between(before, nxt, t, stepped)

"""Plot values: per interval the first, last, lowest and highest sample (numbers only for the extremes), each
once and in time order, so that a chart of one interval per pixel draws every peak."""

from __future__ import annotations

from ..series import Point, Summary


def plot_points(s: Summary | None) -> list[Point]:
    if s is None:
        return []
    chosen = {p.t: p for p in (s.first, s.last, s.min, s.max) if p is not None}
    return [chosen[t] for t in sorted(chosen)]

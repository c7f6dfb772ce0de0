"""Summary calculations of one interval `[a, b)` from its `Summary` and the samples around it.

- `count`: samples in the interval (any value); `min`, `max`, `mean`, `std` (population), `range`: over its
  numeric samples.
- `tavg` and `total` are time-weighted over the item's value as a function of time: linear between consecutive
  numeric samples (held from a sample when the item is stepped), held after the last one. The value is carried
  in from the last sample before `a` when that is a number (interpolated toward the first sample inside); with
  none, the interval is covered from its first numeric sample. `total` is the integral in value·seconds and
  `tavg` the integral divided by the covered time. Non-numeric samples take no part in any of these.
"""

from __future__ import annotations

import math
from typing import Any

from ..series import Point, Summary, is_number

CALCS = ("count", "min", "max", "mean", "tavg", "total", "std", "range")
US = 1_000_000


def _lerp(p: Point, q: Point, t: int) -> float:
    return float(p.v + (q.v - p.v) * (t - p.t) / (q.t - p.t))


def _segment(p: Point, q: Point | None, t0: int, t1: int, stepped: bool) -> float:
    """The integral from `t0` to `t1` of the value leaving sample `p` toward `q` (None: held)."""
    if stepped or q is None:
        return float(p.v) * (t1 - t0)
    return (_lerp(p, q, t0) + _lerp(p, q, t1)) / 2 * (t1 - t0)


def integral(
    s: Summary | None, a: int, b: int, before: Point | None, after: Point | None, stepped: bool
) -> tuple[float, int] | None:
    """The integral over `[a, b)` (value·µs) and the covered time (µs); None when the value is nowhere known.
    `before`: the last sample earlier than `a`; `after`: the first sample at or after `b`."""
    before = before if before is not None and is_number(before.v) else None
    after = after if after is not None and is_number(after.v) else None
    first = s.first_num if s is not None else None
    last = s.last_num if s is not None else None
    if s is None or first is None or last is None:
        return None if before is None else (_segment(before, after, a, b, stepped), b - a)
    area = s.area_step if stepped else s.area_linear
    covered_from = first.t
    if before is not None:
        area += _segment(before, first, a, first.t, stepped)
        covered_from = a
    area += _segment(last, after, last.t, b, stepped)
    return area, b - covered_from


def calculate(
    s: Summary | None,
    a: int,
    b: int,
    before: Point | None,
    after: Point | None,
    calcs: tuple[str, ...],
    *,
    stepped: bool = False,
) -> dict[str, Any]:
    n = s.n if s is not None else 0
    out: dict[str, Any] = {}
    for name in calcs:
        if name == "count":
            out[name] = s.count if s is not None else 0
        elif name in ("tavg", "total"):
            got = integral(s, a, b, before, after, stepped)
            if got is None or got[1] <= 0:
                out[name] = None
            else:
                out[name] = got[0] / got[1] if name == "tavg" else got[0] / US
        elif s is None or n == 0 or s.min is None or s.max is None:
            out[name] = None
        elif name == "min":
            out[name] = s.min.v
        elif name == "max":
            out[name] = s.max.v
        elif name == "mean":
            out[name] = s.total / n
        elif name == "std":
            mean = s.total / n
            out[name] = math.sqrt(max(0.0, s.total_sq / n - mean * mean))
        elif name == "range":
            out[name] = s.max.v - s.min.v
    return out

"""Checked parameters of the historian reads: durations, calc lists, time lists, ranges and counts, each refused
with the query parameter it came from."""

from __future__ import annotations

import math
import re
from datetime import datetime

from tributary_common.timeutil import parse_time

from ..errors import Invalid
from .calcs import CALCS
from .times import to_us

UNITS_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
DURATION_RE = re.compile(r"^(\d{1,12}(?:\.\d{1,6})?)(us|ms|s|m|h|d)?$")
BOUNDARIES = ("inside", "outside", "interpolated")


def invalid(param: str, message: str, code: str = "invalid_request") -> Invalid:
    return Invalid(f"{param}: {message}", [{"loc": f"/query/{param}", "msg": message}], code=code)


def duration_us(text: str, param: str) -> int:
    """`90`, `1.5s`, `500ms`, `15m`, `1h`, `1d` (a bare number is seconds) in whole µs, at least 1."""
    m = DURATION_RE.fullmatch(text.strip())
    if m is None:
        raise invalid(param, "a duration like 30, 1.5s, 500ms, 15m, 1h or 1d")
    us = math.floor(float(m.group(1)) * UNITS_US[m.group(2) or "s"])
    if us < 1:
        raise invalid(param, "must be positive")
    return us


def time_range(start: datetime | None, end: datetime | None) -> tuple[int, int]:
    if start is None or end is None:
        raise invalid("start" if start is None else "end", "start and end are required")
    t0, t1 = to_us(start), to_us(end)
    if t0 >= t1:
        raise invalid("end", "must be after start")
    return t0, t1


def count_of(span: int, step: int, limit: int, param: str) -> int:
    n = -(-span // step)
    if n > limit:
        raise invalid(param, f"{n} intervals or points, over the limit of {limit}; widen it", "too_many_points")
    return n


def at_most(n: int, limit: int, param: str) -> int:
    if n > limit:
        raise invalid(param, f"over the limit of {limit}", "too_many_points")
    return n


def values_at_most(points: int, items: int, limit: int, param: str) -> None:
    """A grid's values, one per point and item, within `limit`."""
    if points * items > limit:
        raise invalid(
            param,
            f"{points} points × {items} items is {points * items} values, over the limit of {limit}; "
            "widen it, shorten the range or choose fewer items",
            "too_many_points",
        )


def grid_times(t0: int, t1: int, step: int, limit: int) -> range:
    """`t0, t0+step, …` up to and including `t1`."""
    count_of(t1 - t0 + 1, step, limit, "interval")
    return range(t0, t1 + 1, step)


def listed_times(text: str, limit: int) -> list[int]:
    """A comma-separated list of RFC 3339 times, strictly ascending."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise invalid("times", "no times given")
    if len(parts) > limit:
        raise invalid("times", f"{len(parts)} times, over the limit of {limit}", "too_many_points")
    out: list[int] = []
    for i, part in enumerate(parts):
        try:
            out.append(to_us(parse_time(part)))
        except (ValueError, OverflowError) as exc:
            raise Invalid(str(exc), [{"loc": f"/query/times/{i}", "msg": str(exc)}], code="invalid_request") from exc
        if len(out) > 1 and out[-1] <= out[-2]:
            raise Invalid(
                "times must be strictly ascending",
                [{"loc": f"/query/times/{i}", "msg": "not after the previous time"}],
                code="invalid_request",
            )
    return out


def calc_list(text: str) -> tuple[str, ...]:
    names = [c.strip() for c in text.split(",") if c.strip()]
    unknown = [c for c in names if c not in CALCS]
    if unknown or not names:
        raise invalid("calc", f"unknown {unknown or 'empty'}; choose from {', '.join(CALCS)}", "unknown_calc")
    return tuple(dict.fromkeys(names))


def boundary_of(text: str | None) -> str:
    if text is None:
        return "inside"
    if text not in BOUNDARIES:
        raise invalid("boundary", f"one of {', '.join(BOUNDARIES)}")
    return text

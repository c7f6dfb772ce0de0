"""What a sample must be to enter a sid's pipeline: a time inside the accepted window, a value and quality that
encode as JSON and that the recorder stores. Pure and cheap: it runs once per sample, before the sample can move
the per-sid watermark. Whatever a connector hands over, a check refuses or normalises it; nothing here raises.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from time import monotonic as _monotonic
from typing import Any, NamedTuple

from tributary_common.timeutil import utcnow

# The JSON encoder and the database store 64-bit signed integers; a bigger one would fail every publish retry.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
# A sample is a reading, not a document; these bound what one sample adds to a batch.
MAX_TEXT_CHARS = 16 * 1024
MAX_QUALITY_CHARS = 256
# How stale the lower bound of the time window may be (the upper one is refreshed before it refuses anything).
BOUNDS_TTL_S = 0.1


class Refusal(NamedTuple):
    """Why a sample was not taken: `reason` is a metric label (a small fixed set), `detail` is for the log."""

    reason: str
    detail: str = ""


NOT_INCREASING = Refusal("not_increasing")
BUFFER_FULL = Refusal("buffer_full")
Clock = Callable[[], datetime]


def _show(t: datetime) -> str:
    try:
        return t.isoformat()
    except Exception:  # noqa: BLE001 - a hostile tzinfo; the log line must still be written
        return object.__repr__(t)


class SampleAdmission:
    """Checks of one sample against `[now - max_age_s, now + max_skew_s]` and the value rules."""

    def __init__(self, max_age_s: float = 10 * 365 * 86400.0, max_skew_s: float = 300.0, clock: Clock = utcnow):
        self.max_age = timedelta(seconds=max_age_s)
        self.max_skew = timedelta(seconds=max_skew_s)
        self._clock = clock
        # The window's bounds, recomputed at most every BOUNDS_TTL_S (reading the clock costs more than the rest of
        # a sample's checks); a time past the cached upper bound is always judged against a fresh one. Public: the
        # pipeline repeats `time`'s first test inline (`SidPipeline.add`), saving a call per sample.
        self.lo = self.hi = datetime.min.replace(tzinfo=UTC)
        self.fresh_until = -1.0

    def time(self, t: Any) -> datetime | Refusal:
        """`t` in UTC, or why it is refused. Naive means UTC."""
        if type(t) is datetime and t.tzinfo is UTC and self.lo <= t <= self.hi and _monotonic() < self.fresh_until:
            return t  # the common case, checked without calls (and repeated inline by the pipeline)
        if not isinstance(t, datetime):
            return Refusal("bad_time", f"time is a {type(t).__name__}, not a datetime")
        return self._in_window(t)

    def _bounds(self, fresh: bool) -> None:
        mono = _monotonic()
        if fresh or mono >= self.fresh_until:
            now = self._clock()
            self.lo, self.hi, self.fresh_until = now - self.max_age, now + self.max_skew, mono + BOUNDS_TTL_S

    def _in_window(self, t: datetime) -> datetime | Refusal:
        try:
            if t.tzinfo is None:
                t = t.replace(tzinfo=UTC)
            self._bounds(fresh=False)
            # Compared before any conversion: converting a time near year 1 or 9999 to UTC can overflow.
            if t > self.hi:
                self._bounds(fresh=True)
                if t > self.hi:
                    return Refusal("too_far_ahead", f"time {_show(t)} is more than {self.max_skew} ahead of now")
            if t < self.lo:
                return Refusal("too_old", f"time {_show(t)} is more than {self.max_age} before now")
            return t if t.tzinfo is UTC else t.astimezone(UTC)
        except Exception as exc:  # noqa: BLE001 - a tzinfo whose utcoffset() fails or returns nonsense
            return Refusal("bad_time", f"time {_show(t)} cannot be read as UTC ({type(exc).__name__})")

    def value(self, v: Any) -> Any:
        """`v` as a plain bool, int, float, str or None, or a `Refusal`."""
        kind = type(v)
        if kind is float:
            return v if math.isfinite(v) else Refusal("not_finite", f"value {v} is not a finite number")
        if kind is int:
            return v if INT_MIN <= v <= INT_MAX else Refusal("bad_value", "integer value outside the 64-bit range")
        if kind is str:
            return _text(v, MAX_TEXT_CHARS, "value")
        if v is None or kind is bool:
            return v
        # Subclasses (IntEnum, a str enum, numpy.float64) are sent as their base type, which the encoder takes.
        if isinstance(v, bool):
            return bool(v)
        for base in (int, float, str):
            if isinstance(v, base):
                return self.value(base(v))
        return Refusal("bad_value", f"a {kind.__name__} is not a sample value (bool, int, float, str or None)")

    def quality(self, q: Any) -> Any:
        """`q` as a plain int, str or None, or a `Refusal`."""
        if q is None:
            return None
        if isinstance(q, int) and not isinstance(q, bool):
            q = int(q)
            return q if INT_MIN <= q <= INT_MAX else Refusal("bad_quality", "quality outside the 64-bit range")
        if isinstance(q, str):
            checked = _text(str(q), MAX_QUALITY_CHARS, "quality")
            return Refusal("bad_quality", checked.detail) if isinstance(checked, Refusal) else checked
        return Refusal("bad_quality", f"a {type(q).__name__} is not a quality (int, str or None)")


def _text(s: str, limit: int, what: str) -> str | Refusal:
    if len(s) > limit:
        return Refusal("bad_value", f"{what} of {len(s)} characters is over {limit}")
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no JSON encoder takes them
            return Refusal("bad_value", f"{what} is not valid Unicode (lone surrogates)")
    return s

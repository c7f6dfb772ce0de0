"""Per-sid deduplication and batching: what a connector emits becomes strictly increasing batches.

Pure asyncio, no I/O: the publish function is injected, so the logic is tested without a broker. Every sample is
checked (`admission.py`) before it can move the watermark: one bad time or value is refused, never published.

The buffer is three columns (times, values, qualities), and the batch in flight a `columns.Batch` taken out of them:
no tuple per sample for the cyclic GC to walk (`columns.py`). The batch is taken out, not copied, so the samples in
flight are held once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from math import isfinite as _isfinite
from time import monotonic as _monotonic
from typing import Any

from tributary_common.backoff import Backoff
from tributary_common.tasks import cancel_and_wait

from .admission import BUFFER_FULL, NOT_INCREASING, Refusal, SampleAdmission
from .columns import EMPTY, Batch, Row, take

log = logging.getLogger(__name__)

__all__ = ["Batch", "PublishFn", "Row", "SidPipeline"]

_ONE_US = timedelta(microseconds=1)
PublishFn = Callable[[str, Sequence[Row]], Awaitable[None]]
DropFn = Callable[[Refusal], None]


class SidPipeline:
    """Buffer of one sid: drops samples not after the last accepted one, publishes batches in order.

    At most one batch of a sid is in flight, so batches reach the broker in timestamp order.
    """

    def __init__(
        self,
        sid: str,
        publish: PublishFn,
        on_drop: DropFn,
        *,
        max_size: int,
        max_delay_s: float,
        max_buffer: int,
        retry: Backoff,
        last_t: datetime | None = None,
        admission: SampleAdmission | None = None,
    ) -> None:
        self.sid = sid
        self._publish = publish
        self._on_drop = on_drop
        self._max_size = max_size
        self._max_delay = max_delay_s
        self._max_buffer = max_buffer
        self._retry = retry
        self._admission = admission or SampleAdmission()
        self.last_t = last_t  # the last accepted timestamp (buffered or published)
        self.published_t = last_t  # the last timestamp the broker confirmed
        # Accepted, not sent yet: times, values and qualities, one entry per sample in each.
        self._ts: list[datetime] = []
        self._vs: list[Any] = []
        self._qs: list[Any] = []
        self._sending: Batch = EMPTY  # the batch in flight, until the broker confirms it
        self._first_at = 0.0
        self._has_data = asyncio.Event()
        self._full = asyncio.Event()
        # Fast sources wait in room() while this many samples are buffered (two batches: one in flight, one ready).
        self._high_water = min(max_buffer, max(2 * max_size, 100))
        self._space = asyncio.Event()
        self._space.set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._draining = False
        self._task: asyncio.Task[None] | None = None
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"batch:{self.sid}")

    def add(self, t: Any, v: Any, q: Any) -> bool:
        """Accept one sample; False (and handed to `on_drop` with the reason) when its time is outside the window or
        not a time, its value or quality cannot be sent, it is not after the last one, or the buffer is full.

        Never raises, whatever the connector passed: a bad sample must not stop the read."""
        adm = self._admission
        # The common sample (a plain UTC time inside the cached window, a finite float, no quality) passes the same
        # tests as `SampleAdmission.time` and `.value` inline: two calls less per sample. Anything else is judged
        # by them.
        if not (type(t) is datetime and t.tzinfo is UTC and adm.lo <= t <= adm.hi and _monotonic() < adm.fresh_until):
            t = adm.time(t)
            if type(t) is Refusal:
                self._on_drop(t)
                return False
        last_t = self.last_t
        if last_t is not None and t <= last_t:
            self._on_drop(NOT_INCREASING)
            return False
        if type(v) is not float or not _isfinite(v):
            v = adm.value(v)
            if type(v) is Refusal:
                self._on_drop(v)
                return False
        if q is not None:
            q = adm.quality(q)
            if type(q) is Refusal:
                self._on_drop(q)
                return False
        ts = self._ts
        n = len(ts) + len(self._sending)  # the bounds count the batch in flight too
        if n >= self._max_buffer:
            self._on_drop(BUFFER_FULL)
            return False
        if not ts:
            self._first_at = self._loop.time()
            self._has_data.set()
            self._empty.clear()
        ts.append(t)
        self._vs.append(v)
        self._qs.append(q)
        self.last_t = t
        n += 1
        if n >= self._high_water:
            self._space.clear()
        if len(ts) >= self._max_size:
            self._full.set()
        return True

    def add_many(self, rows: Iterable[tuple[Any, Any, Any]]) -> None:
        """`add` of each row, in order, with the same checks and refusals; the common sample (as in `add`) is
        appended without a call of its own, and the buffer's events are updated once per call."""
        adm = self._admission
        ts = self._ts
        was_empty = not ts
        sending = len(self._sending)  # unchanged during the call (no await)
        room = self._max_buffer - sending - len(ts)
        last_t = self.last_t
        hi, fresh = adm.hi, _monotonic() < adm.fresh_until
        after = _after(adm.lo, last_t, fresh)
        t_append, v_append, q_append = ts.append, self._vs.append, self._qs.append
        for t, v, q in rows:
            if (
                fresh
                and type(t) is datetime
                and t.tzinfo is UTC
                and after < t <= hi
                and type(v) is float
                and _isfinite(v)
                and q is None
                and room > 0
            ):
                t_append(t)
                v_append(v)
                q_append(None)
                last_t = after = t
                room -= 1
                continue
            # Anything else (and every refusal) goes through `add`, which may also renew the time window.
            self.last_t = last_t
            self.add(t, v, q)
            last_t = self.last_t
            hi, fresh = adm.hi, _monotonic() < adm.fresh_until
            after = _after(adm.lo, last_t, fresh)
            room = self._max_buffer - sending - len(ts)
        self.last_t = last_t
        if was_empty and ts:
            self._first_at = self._loop.time()
            self._has_data.set()
            self._empty.clear()
        if len(ts) + sending >= self._high_water:
            self._space.clear()
        if len(ts) >= self._max_size:
            self._full.set()

    async def room(self) -> None:
        """Wait while the buffer is at its high-water mark (returns at once otherwise)."""
        while not self._space.is_set():
            await self._space.wait()

    async def _run(self) -> None:
        while True:
            await self._has_data.wait()
            if len(self._ts) < self._max_size and not self._draining:
                delay = self._first_at + self._max_delay - self._loop.time()
                if delay > 0:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._full.wait()
            await self._flush_one()

    async def _flush_one(self) -> None:
        # The batch is dropped only once the broker confirmed it (a publish that fails is sent again, the same
        # batch, before anything after it).
        batch = self._sending = take(self._ts, self._vs, self._qs, self._max_size)
        while True:
            try:
                await self._publish(self.sid, batch)
                break
            except asyncio.CancelledError:
                # Stopped before the broker confirmed: the batch is still the oldest one not sent for sure.
                self._ts[:0], self._vs[:0], self._qs[:0] = batch.ts, batch.vs, batch.qs
                self._sending = EMPTY
                raise
            except Exception as exc:  # noqa: BLE001 - the broker may come back; retry with backoff
                delay = self._retry.next_delay()
                log.warning(
                    "publishing %d samples of %s failed (%s); retrying in %.1f s", len(batch), self.sid, exc, delay
                )
                await asyncio.sleep(delay)
        self._retry.reset()
        self.published_t = batch.ts[-1]
        self._sending = EMPTY
        if len(self._ts) < self._high_water:
            self._space.set()
        if self._ts:
            self._first_at = self._loop.time()
            if len(self._ts) < self._max_size:
                self._full.clear()
        else:
            self._has_data.clear()
            self._full.clear()
            self._empty.set()

    async def drain(self, timeout: float) -> None:
        """Publish what is buffered without waiting for the batch delay (at shutdown or release), then stop.

        A publish in flight is never cancelled (it may have reached the broker already, and a retry would send
        the batch twice), unless the broker has not confirmed within `timeout`.
        """
        self._draining = True
        self._full.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                if self._task is None:
                    while self._ts:
                        await self._flush_one()
                else:
                    await self._empty.wait()
        await self.close(forget=False)

    async def close(self, forget: bool = True) -> None:
        """Stop at once; forget the buffer (the lease is lost: another instance reads this sid now)."""
        if forget:
            self._ts.clear()
            self._vs.clear()
            self._qs.clear()
            self._sending = EMPTY
        self._space.set()
        await cancel_and_wait(self._task)
        self._task = None


def _after(lo: datetime, last_t: datetime | None, fresh: bool) -> datetime:
    """What a common sample's time must be later than: the window's start and the last sample, one comparison
    with the later of the two (times are whole microseconds, so `lo <= t` is `lo - 1 µs < t`). Without a fresh
    window the fast path is off and this is never compared."""
    if not fresh:
        return lo
    return lo - _ONE_US if last_t is None or last_t < lo else last_t

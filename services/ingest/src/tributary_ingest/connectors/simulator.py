"""`simulator`: deterministic sine, ramp, random walk and step signals on a fixed time grid."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..sdk import Connector
from .signals import make_signal

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# At most this many samples per wake-up, so one fast subscription cannot starve the others.
MAX_BURST = 500
# A subscription further behind than this (a slow machine) skips ahead instead of catching up forever.
MAX_LAG_S = 5.0


# The params that shape the signal, as `make_signal` takes them.
SHAPE = {"seed", "offset", "amplitude", "period_s", "phase", "step"}


class SimulatorParams(BaseModel):
    """One simulated signal. Samples fall on the grid t = k / rate_hz since the Unix epoch."""

    model_config = ConfigDict(extra="forbid")

    signal: Literal["sine", "ramp", "random_walk", "step"] = Field(description="The shape of the signal")
    seed: int = Field(default=0, description="Same seed, same values at the same timestamps")
    rate_hz: float = Field(default=1.0, gt=0, le=100_000, description="Samples per second")
    amplitude: float = 1.0
    offset: float = 0.0
    period_s: float = Field(default=60.0, gt=0, description="Period of sine and ramp; hold time of a step level")
    phase: float = Field(default=0.0, description="Phase of sine and ramp, radians")
    step: float = Field(default=0.05, ge=0, description="Standard deviation of one random-walk step")


class SimulatorSource(Connector[SimulatorParams]):
    params_model = SimulatorParams
    capacity = 10000

    async def read(self, sid: str, params: SimulatorParams) -> None:
        value = make_signal(params.signal, **params.model_dump(include=SHAPE))
        interval_us = max(1, round(1_000_000 / params.rate_hz))
        k = time.time_ns() // 1000 // interval_us + 1  # the next grid point
        emit_many = self.sink.emit_many
        step = timedelta(microseconds=interval_us)
        while True:
            now_us = time.time_ns() // 1000
            due = now_us // interval_us
            if k > due:
                await asyncio.sleep((k * interval_us - now_us) / 1e6)
                continue
            if (due - k) * interval_us > MAX_LAG_S * 1e6:
                k = due - int(MAX_LAG_S * 1e6 / interval_us)
            await self.sink.room(sid)  # never outrun the broker: a simulation can always wait
            end = min(due, k + MAX_BURST - 1)
            # The burst's list lives only for the call: kept across the awaits below, a thousand sids' bursts
            # (half a million rows) were walked by every full collection of the cyclic GC.
            emit_many(sid, _burst(value, k, end, interval_us, step))
            k = end + 1
            await asyncio.sleep(0)


def _burst(
    value: Callable[[int, float], float], k: int, end: int, interval_us: int, step: timedelta
) -> list[tuple[datetime, float, None]]:
    """The samples of grid points k..end: one datetime addition per sample (exact: whole microseconds), not a
    timedelta built for each."""
    t = EPOCH + timedelta(microseconds=k * interval_us)
    rows: list[tuple[datetime, float, None]] = []
    for i in range(k, end + 1):
        rows.append((t, value(i, i * interval_us / 1e6), None))
        t += step
    return rows

"""`simulator`: deterministic sine, ramp, random walk and step signals on a fixed time grid."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from itertools import accumulate, repeat
from operator import add
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..sdk import Connector
from .signals import make_values

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# At most this many samples per wake-up, so one fast subscription cannot starve the others.
MAX_BURST = 500
# A subscription further behind than this (a slow machine) skips ahead instead of catching up forever.
MAX_LAG_S = 5.0


# The params that shape the signal, as `make_signal` and `make_values` take them.
SHAPE = {"seed", "offset", "amplitude", "period_s", "phase", "step"}
# Below these the grid step overflows `timedelta` (rate_hz 1e-300 failed every read with OverflowError), and
# t / period_s overflows to inf (period_s 1e-300: sin(inf) failed every read with ValueError). One sample per
# 11.6 days and a period of 1 µs (the grid's resolution) are more than any simulation needs. In the announced schema,
# so that the hub refuses them when the unitop is written.
MIN_RATE_HZ = 1e-6
MIN_PERIOD_S = 1e-6


class SimulatorParams(BaseModel):
    """One simulated signal. Samples fall on the grid t = k / rate_hz since the Unix epoch."""

    # NaN and infinities (which a demand's JSON may carry) made every sample a refused non-finite value.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    signal: Literal["sine", "ramp", "random_walk", "step"] = Field(description="The shape of the signal")
    # 64-bit: a seed of thousands of digits is formatted into every step level's seed string (114 ms of the event
    # loop per burst of 500 step samples with 4,000 digits).
    seed: int = Field(default=0, ge=-(2**63), le=2**63 - 1, description="Same seed, same values at the same timestamps")
    rate_hz: float = Field(default=1.0, ge=MIN_RATE_HZ, le=100_000, description="Samples per second")
    amplitude: float = 1.0
    offset: float = 0.0
    period_s: float = Field(
        default=60.0, ge=MIN_PERIOD_S, description="Period of sine and ramp; hold time of a step level"
    )
    phase: float = Field(default=0.0, description="Phase of sine and ramp, radians")
    step: float = Field(default=0.05, ge=0, description="Standard deviation of one random-walk step")


class SimulatorSource(Connector[SimulatorParams]):
    params_model = SimulatorParams
    capacity = 10000

    async def read(self, sid: str, params: SimulatorParams) -> None:
        interval_us = max(1, round(1_000_000 / params.rate_hz))
        values = make_values(params.signal, interval_us, **params.model_dump(include=SHAPE))
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
            emit_many(sid, _burst(values(k, end), k, interval_us, step))
            k = end + 1
            await asyncio.sleep(0)


def _burst(values: list[float], k: int, interval_us: int, step: timedelta) -> list[tuple[datetime, float, None]]:
    """The samples of grid points k, k+1, ... with these values: the times by one datetime addition each (exact:
    whole microseconds), the rows made by `zip` (no Python loop per sample)."""
    first = EPOCH + timedelta(microseconds=k * interval_us)
    n = len(values)
    return list(zip(accumulate(repeat(step, n - 1), add, initial=first), values, repeat(None, n), strict=True))

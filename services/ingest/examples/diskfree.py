"""An example third-party source: the free space of a filesystem, sampled at an interval."""

from __future__ import annotations

import asyncio
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tributary_ingest.sdk import Connector


class DiskFreeParams(BaseModel):
    """One subscription: which filesystem, how often, in which unit."""

    model_config = ConfigDict(extra="forbid")  # unknown keys are rejected, not silently ignored

    path: str = Field(description="Any absolute path on the filesystem to watch")
    interval_s: float = Field(default=10.0, ge=0.1, description="Seconds between samples")
    unit: Literal["B", "MiB", "GiB"] = "MiB"

    @field_validator("path")
    @classmethod
    def _absolute(cls, v: str) -> str:
        if not Path(v).is_absolute():
            raise ValueError("must be an absolute path")
        return v


class DiskFreeSource(Connector[DiskFreeParams]):
    params_model = DiskFreeParams
    capacity = 100  # the most subscriptions (leases) of this source one instance takes

    async def read(self, sid: str, params: DiskFreeParams) -> None:
        # Runs until the framework cancels it (demand gone, lease lost, shutdown). If it raises,
        # the framework logs it and calls read() again after a jittered exponential backoff.
        divisor = {"B": 1, "MiB": 2**20, "GiB": 2**30}[params.unit]
        while True:
            usage = await asyncio.to_thread(shutil.disk_usage, params.path)
            self.sink.emit(sid, datetime.now(UTC), round(usage.free / divisor, 3))
            await asyncio.sleep(params.interval_s)

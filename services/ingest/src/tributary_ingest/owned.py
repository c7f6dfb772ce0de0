"""A sid this instance holds the lease of: its pipeline, its retry state and what is known of its read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tributary_common.backoff import Backoff

from .pipeline import Row, SidPipeline


@dataclass
class Owned:
    """A sid this instance holds the lease of."""

    params: Any
    pipeline: SidPipeline
    backoff: Backoff
    state: str = "starting"  # starting | running | backoff | releasing
    retry_at: float = 0.0
    started_at: float = 0.0
    last_error: str | None = None
    wm_written: datetime | None = None
    last_warn_at: float = field(default=-1e9)
    # Live samples held while the history since the watermark is read (None: not backfilling).
    held: list[Row] | None = None

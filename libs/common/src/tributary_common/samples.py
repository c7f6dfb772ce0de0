"""Sample batches: what ingest publishes on `tributary.samples` and what sample history returns."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from .events import UtcTime

# The largest `SampleBatch` body ingest publishes: a batch that encodes larger (long texts) goes out as several, in
# order. Consumers size what they hold unacked by it (a broker counts messages, not bytes).
SAMPLE_BATCH_MAX_BYTES = 1024 * 1024

# bool before int: JSON `true` must stay a bool, not become 1.
SampleValue = Annotated[StrictBool | StrictInt | StrictFloat | StrictStr | None, Field(union_mode="left_to_right")]
Quality = StrictInt | StrictStr | None


class Sample(BaseModel):
    model_config = ConfigDict(extra="forbid")

    t: UtcTime
    v: SampleValue
    q: Quality = None


class SampleBatch(BaseModel):
    """`{sid, source, samples}` with timestamps strictly increasing within the batch."""

    model_config = ConfigDict(extra="forbid")

    sid: str = Field(min_length=1, max_length=64)
    source: str = Field(min_length=1, max_length=64)
    samples: list[Sample] = Field(min_length=1)

    @model_validator(mode="after")
    def _strictly_increasing(self) -> SampleBatch:
        for i in range(1, len(self.samples)):
            if self.samples[i].t <= self.samples[i - 1].t:
                raise ValueError(f"samples[{i}].t is not after samples[{i - 1}].t: timestamps must strictly increase")
        return self

    @property
    def routing_key(self) -> str:
        return f"{self.source}.{self.sid}"

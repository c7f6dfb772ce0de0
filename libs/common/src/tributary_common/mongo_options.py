"""The MongoDB client's write and read options, apart from `mongo` so that reading settings does not import
beanie (ingest and stream never talk to the database)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ReadPreferenceName = Literal["primary", "primaryPreferred", "secondary", "secondaryPreferred", "nearest"]


@dataclass(frozen=True)
class ClientOptions:
    """How the client writes and reads. The defaults are right for a replica set (an acknowledged write survives a
    failover, is retried once across an election, and reads see every acknowledged write) and are accepted by
    FerretDB 1.24 and a standalone MongoDB too. They win over the same options written in the URL."""

    write_concern: str | int = "majority"
    # How long a write waits for its write concern before failing (0: forever). A bound, so that a replica set
    # without a majority fails the recorder's batch (retried, nacked) instead of hanging it.
    write_timeout_ms: int = 10_000
    read_preference: ReadPreferenceName = "primary"
    retry_writes: bool = True
    replica_set: str | None = None

    def kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "w": self.write_concern,
            "wTimeoutMS": self.write_timeout_ms,
            "readPreference": self.read_preference,
            "retryWrites": self.retry_writes,
        }
        if self.replica_set:
            kw["replicaSet"] = self.replica_set
        return kw

"""Which collection holds a sid's sample buckets and summaries (`TRIBUTARY_STORAGE_LAYOUT`).

`partitioned` (the default, for FerretDB, which scans a whole collection for every query): raw buckets per
(sid, UTC day), summaries per (sid, UTC month), so a read passes over only what it needs. `indexed` (MongoDB in
production): one collection per kind with a compound `(sid, start)` index. Documents and queries are the same in
both (every query names its sid and range); only the collection a key maps to differs. Partitions are listed per
sid in a small catalog so that reads and retention know what exists without listing collections.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .partitions import Layout

LAYOUTS: tuple[Layout, ...] = tuple(Layout)
Kind = Literal["raw", "sum", "hrs"]  # buckets, minute summaries, hour summaries
KINDS: tuple[Kind, ...] = ("raw", "sum", "hrs")

DAY_US = 86_400_000_000
RAW = "sample_buckets"
SUMMARIES = "sample_summaries"
HOURS = "sample_hours"
CURRENT = "sample_current"
CURRENT_SHARDS = "sample_current_shards"
CATALOG = "sample_catalog"
PREFIX = "samples."  # every partition collection starts with it (and nothing else does)
_SAFE_SID = re.compile(r"[a-z0-9_-]{1,40}")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def month_of(t: int) -> int:
    """Months since 1970-01 of the time `t` (µs)."""
    d = EPOCH.fromtimestamp(t // 1_000_000, UTC)
    return (d.year - 1970) * 12 + d.month - 1


def month_start(month: int) -> int:
    year, m = divmod(month, 12)
    if 1970 + year > 9999:  # the end of December 9999, which datetime cannot name
        return month_start(month - 1) + 31 * DAY_US
    return int((datetime(1970 + year, m + 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1_000_000


def partition_key(kind: Kind, t: int) -> int:
    """The day (raw) or month (summaries) holding time `t`."""
    return t // DAY_US if kind == "raw" else month_of(t)


def partition_span(kind: Kind, key: int) -> tuple[int, int]:
    """`[start, end)` in µs of a partition key."""
    if kind == "raw":
        return key * DAY_US, (key + 1) * DAY_US
    return month_start(key), month_start(key + 1)


def _sid_name(sid: str) -> str:
    """The sid itself when it is short and plain (ingest's sids are), else a digest: queries name the sid anyway."""
    if _SAFE_SID.fullmatch(sid):
        return sid
    return "h" + hashlib.sha256(sid.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SamplePartitions:
    layout: Layout = Layout.PARTITIONED

    @property
    def dedicated(self) -> bool:
        """A partition's collection holds only that partition (so expiring it is dropping the collection)."""
        return self.layout is not Layout.INDEXED  # `packed` stores samples as `partitioned`

    def collection(self, kind: Kind, sid: str, key: int) -> str:
        if self.layout == Layout.INDEXED:
            return {"raw": RAW, "sum": SUMMARIES, "hrs": HOURS}[kind]
        return f"{PREFIX}{kind}.{_sid_name(sid)}.{key}"

    def holding(self, kind: Kind, sid: str, t: int) -> str:
        """The collection holding the sid's bucket (raw) or summary (sum) of time `t`."""
        return self.collection(kind, sid, partition_key(kind, t))

    def spans(self, kind: Kind, sid: str, keys: list[int], start: int, end: int) -> list[tuple[str, int, int]]:
        """The collections to query for `[start, end)`, each with the part of the range it holds, in time order;
        consecutive partitions in one collection (the indexed layout) are one query."""
        out: list[tuple[str, int, int]] = []
        for key in sorted(keys):
            lo, hi = partition_span(kind, key)
            lo, hi = max(lo, start), min(hi, end)
            if lo >= hi:
                continue
            name = self.collection(kind, sid, key)
            if out and out[-1][0] == name:
                out[-1] = (name, out[-1][1], hi)
            else:
                out.append((name, lo, hi))
        return out

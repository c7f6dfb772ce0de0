"""The cyclic GC's thresholds, raised for a service process (never lowered below what was set higher).

CPython collects the young generation every 700 net allocations of tracked objects, the middle one every 10 young
collections and the oldest every 10 middle ones (once it grew by a quarter). A busy service allocates far faster:
the hub at 3,000 requests a second ran ~165 young collections a second, each walking the objects of the requests
in flight and, traced, the spans waiting for export (bench/README.md, Hub publish, eighth pass).
"""

from __future__ import annotations

import gc


def raise_gc_thresholds(young: int, middle: int, full: int) -> None:
    """Set each threshold to at least the given one."""
    now = gc.get_threshold()
    gc.set_threshold(max(now[0], young), max(now[1], middle), max(now[2], full))

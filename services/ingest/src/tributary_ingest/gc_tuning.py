"""How often the cyclic GC walks everything, for a process holding many busy sids.

An instance keeps on the order of a hundred long-lived tracked objects per held sid (its pipeline, tasks, events,
the publish in flight with its futures and message) besides its imports. Whatever outlives two young collections
is promoted to the oldest generation, and CPython runs a full collection once that generation grew by a quarter
and at least `threshold2` middle collections ran (10 by default). At 1,000 busy sids that was 5-7 full collections
every 6 s, 110-160 ms each, finding no garbage: 13-15 % of the process's time (bench/README.md, Ingest). At least
`MIDDLE_PER_FULL` middle collections between two full ones keep that under one every few seconds; cycles are
still collected by the young and middle generations first, only the ones that outlived both wait longer.

The middle generation holds what outlived a young collection: at 1,000 busy sids mostly the thousand publishes in
flight, each alive about a second. Walked every 10 young collections (CPython's default, ~0.5 s there) each of them
was walked about twice (27 ms a second); every `YOUNG_PER_MIDDLE` (~2 s) most have ended before the next walk.
"""

from __future__ import annotations

from tributary_common.gc_tuning import raise_gc_thresholds

MIDDLE_PER_FULL = 100
YOUNG_PER_MIDDLE = 50


def tune_gc() -> None:
    """Raise the middle and full collections' thresholds for this process (never lowers one set higher)."""
    raise_gc_thresholds(0, YOUNG_PER_MIDDLE, MIDDLE_PER_FULL)

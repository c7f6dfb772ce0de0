"""What this process spent while a measured part ran: CPU (all threads, in cores) and the share of the wall time
the cyclic GC ran. Tells a CPU-bound part (CPU near one core, the event loop never idle) from one waiting on
the broker, and shows what the GC costs.

    meter = ProcessMeter()
    meter.start()
    ...  # the measured part
    usage = meter.stop()   # usage.cpu_cores, usage.gc_share
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Usage:
    wall_s: float
    cpu_cores: float  # process CPU time / wall time (all threads)
    gc_share: float  # time inside cyclic GC collections / wall time
    full_collections: int


class ProcessMeter:
    def __init__(self) -> None:
        self._gc_s = 0.0
        self._full = 0
        self._since = 0.0
        self._t0 = self._c0 = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._since = time.perf_counter()
            return
        self._gc_s += time.perf_counter() - self._since
        self._full += info["generation"] == 2

    def start(self) -> None:
        self._gc_s, self._full = 0.0, 0
        gc.callbacks.append(self._on_gc)
        self._t0, self._c0 = time.perf_counter(), time.process_time()

    def stop(self) -> Usage:
        wall = time.perf_counter() - self._t0
        cpu = time.process_time() - self._c0
        gc.callbacks.remove(self._on_gc)
        return Usage(wall, cpu / wall, self._gc_s / wall, self._full)

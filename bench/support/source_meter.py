"""The CPU the simulator spends making samples (its signal values and rows), so that an ingest bench can tell the
load generator's cost from the framework's: the simulator stands in for a device, and the baseline it is compared
with is handed rows made before its clock starts.

Wraps `simulator.make_values`'s functions and `simulator._burst` while installed, timing each call with this
thread's CPU clock (one call per burst of up to 500 samples: ~0.2 µs of clock reads per burst). A cyclic GC
collection that runs inside such a call is not counted: what it walks is mostly the framework's buffers.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tributary_ingest.connectors import simulator


class SourceMeter:
    def __init__(self) -> None:
        self.cpu_ns = 0  # inside the simulator's value and row making, GC collections left out
        self._depth = 0
        self._gc_started = 0

    def seconds(self) -> float:
        return self.cpu_ns / 1e9

    def _on_gc(self, phase: str, _info: dict[str, Any]) -> None:
        if not self._depth:
            return
        if phase == "start":
            self._gc_started = time.thread_time_ns()
        else:
            self.cpu_ns -= time.thread_time_ns() - self._gc_started

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any) -> Any:
            self._depth += 1
            t0 = time.thread_time_ns()
            try:
                return fn(*args)
            finally:
                self.cpu_ns += time.thread_time_ns() - t0
                self._depth -= 1

        return timed

    @contextmanager
    def installed(self) -> Iterator[SourceMeter]:
        names = vars(simulator)  # the module's globals, which its read loop looks these up in
        make_values, burst = names["make_values"], names["_burst"]
        names["make_values"] = lambda *a, **kw: self._timed(make_values(*a, **kw))
        names["_burst"] = self._timed(burst)
        gc.callbacks.append(self._on_gc)
        try:
            yield self
        finally:
            names["make_values"], names["_burst"] = make_values, burst
            gc.callbacks.remove(self._on_gc)

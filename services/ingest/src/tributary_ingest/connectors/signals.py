"""Deterministic signals: the value at grid step k depends only on the parameters and k.

So two runs (or two instances taking over from each other) give the same values at the same timestamps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from itertools import accumulate

WALK_BLOCK = 1024


def _unit(seed: int, kind: str, index: int) -> random.Random:
    # String seeds are hashed with SHA-512 by `random`: the same in every process, whatever PYTHONHASHSEED says.
    return random.Random(f"{seed}:{kind}:{index}")


class RandomWalk:
    """Gaussian steps, pinned every WALK_BLOCK steps to a seeded anchor (a Brownian bridge between anchors).

    Any step's value costs O(1) amortized: a block of steps is generated once and kept.
    """

    def __init__(self, seed: int, offset: float, amplitude: float, step: float) -> None:
        self.seed, self.offset, self.amplitude, self.step = seed, offset, amplitude, step
        self._block = -1
        self._values: list[float] = []

    def _anchor(self, block: int) -> float:
        return self.offset + self.amplitude * _unit(self.seed, "anchor", block).gauss(0.0, 1.0)

    def __call__(self, k: int) -> float:
        block, i = divmod(k, WALK_BLOCK)
        if block != self._block:
            rnd = _unit(self.seed, "walk", block)
            sums = [0.0, *accumulate(rnd.gauss(0.0, self.step) for _ in range(WALK_BLOCK))]
            a0, a1 = self._anchor(block), self._anchor(block + 1)
            drift = (sums[-1] - (a1 - a0)) / WALK_BLOCK
            self._values = [a0 + sums[j] - j * drift for j in range(WALK_BLOCK)]
            self._block = block
        return self._values[i]


def make_signal(
    kind: str, *, seed: int, offset: float, amplitude: float, period_s: float, phase: float, step: float
) -> Callable[[int, float], float]:
    """A function of (grid step k, time in seconds) giving the value."""
    if kind == "sine":
        return lambda _k, t: offset + amplitude * math.sin(2 * math.pi * t / period_s + phase)
    if kind == "ramp":
        # A sawtooth from offset to offset + amplitude over each period.
        return lambda _k, t: offset + amplitude * ((t / period_s + phase / (2 * math.pi)) % 1.0)
    if kind == "step":
        # A new seeded level in [offset - amplitude, offset + amplitude] every period.
        def level(_k: int, t: float) -> float:
            return offset + amplitude * _unit(seed, "step", math.floor(t / period_s)).uniform(-1.0, 1.0)

        return level
    if kind == "random_walk":
        walk = RandomWalk(seed, offset, amplitude, step)
        return lambda k, _t: walk(k)
    raise ValueError(f"unknown signal {kind!r}")


def make_values(
    kind: str,
    interval_us: int,
    *,
    seed: int,
    offset: float,
    amplitude: float,
    period_s: float,
    phase: float,
    step: float,
) -> Callable[[int, int], list[float]]:
    """A function of (first grid step k, last grid step end) giving the values of k..end on a grid of
    `interval_us`: exactly `make_signal`'s (the same expressions, in the same order), without a call per sample
    for the sine and the ramp (the call was a third of the simulator's cost per sample)."""
    sin, two_pi = math.sin, 2 * math.pi
    if kind == "sine":
        return lambda k, end: [
            offset + amplitude * sin(two_pi * (i * interval_us / 1e6) / period_s + phase) for i in range(k, end + 1)
        ]
    if kind == "ramp":
        turn = phase / two_pi
        return lambda k, end: [
            offset + amplitude * (((i * interval_us / 1e6) / period_s + turn) % 1.0) for i in range(k, end + 1)
        ]
    one = make_signal(kind, seed=seed, offset=offset, amplitude=amplitude, period_s=period_s, phase=phase, step=step)
    return lambda k, end: [one(i, i * interval_us / 1e6) for i in range(k, end + 1)]

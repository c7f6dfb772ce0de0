"""The one table of issue 13's ratios: each benchmark records its goals here, `make bench` prints them at the end.

A benchmark calls `record(...)` for each goal it measures; the rows go, one JSON line each, to the file named by
BENCH_RATIOS_FILE (set by `make bench`; unset, nothing is written, so a benchmark run alone only prints its own
output). `python bench/support/ratios.py FILE` prints the table of every row recorded in FILE.
"""

from __future__ import annotations

import math
import operator
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import orjson

ENV = "BENCH_RATIOS_FILE"
_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Row:
    bench: str
    what: str
    measured: float
    unit: str
    baseline: float | None  # None: an absolute goal (the goal applies to `measured`, not to a ratio)
    goal: str  # ">= 0.9" (of the ratio when there is a baseline) or "<= 25" (of `measured` without one)

    @property
    def ratio(self) -> float | None:
        return self.measured / self.baseline if self.baseline else None

    @property
    def met(self) -> bool:
        op, _, value = self.goal.partition(" ")
        subject = self.ratio if self.baseline is not None else self.measured
        return subject is not None and not math.isnan(subject) and _OPS[op](subject, float(value))


def record(bench: str, what: str, measured: float, unit: str, baseline: float | None, goal: str) -> Row:
    """Append one goal's measurement to the run's table (when `make bench` asked for one)."""
    row = Row(bench, what, float(measured), unit, None if baseline is None else float(baseline), goal)
    op, _, value = goal.partition(" ")
    if op not in _OPS or not value:
        raise ValueError(f"goal {goal!r}: expected '>= x' or '<= x'")
    if path := os.environ.get(ENV):
        with open(path, "ab") as out:
            out.write(orjson.dumps(asdict(row)) + b"\n")
    return row


def load(path: Path) -> list[Row]:
    if not path.exists():
        return []
    return [Row(**orjson.loads(line)) for line in path.read_bytes().splitlines() if line.strip()]


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.2f}"
    return f"{text} {unit}".rstrip()


def table(rows: list[Row]) -> str:
    head = ("bench", "what", "measured", "baseline", "ratio", "goal", "met?")
    lines = [
        (
            r.bench,
            r.what,
            _num(r.measured, r.unit),
            _num(r.baseline, r.unit),
            "—" if r.ratio is None else f"{r.ratio:.2f}",
            f"ratio {r.goal}" if r.baseline is not None else f"{r.goal} {r.unit}".rstrip(),
            "yes" if r.met else "NO",
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *lines, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*line) for line in lines]
    return "\n".join(out)


if __name__ == "__main__":
    rows = load(Path(sys.argv[1]))
    print(f"\nissue 13: every ratio of this run ({len(rows)} goals, {sum(r.met for r in rows)} met)")
    print(table(rows) if rows else "(no benchmark recorded a goal)")

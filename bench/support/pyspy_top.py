"""Summarise py-spy raw (collapsed) profiles: the functions with the most samples on top of the stack (self) and
anywhere on it (inclusive). `python bench/support/pyspy_top.py FILE [N]`."""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^)]*)\)$")


def short(frame: str) -> str:
    """`func (path/to/module.py:12)` -> `module.func` (line numbers dropped so a function counts once)."""
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    module = Path(m["file"].split(":")[0]).stem
    return f"{module}.{m['func']}"


def summarise(text: str) -> tuple[int, Counter[str], Counter[str]]:
    total, own, inclusive = 0, Counter[str](), Counter[str]()
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short(f) for f in stack.split(";") if f and not f.startswith("process ")]
        total += n
        if frames:
            own[frames[-1]] += n
        for name in set(frames):
            inclusive[name] += n
    return total, own, inclusive


if __name__ == "__main__":
    path, top = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 25
    total, own, inclusive = summarise(path.read_text())
    print(f"{path.name}: {total} samples")
    for (fo, no), (fi, ni) in zip(own.most_common(top), inclusive.most_common(top), strict=False):
        print(f"  self {100 * no / total:5.1f}% {fo[:60]:<60} incl {100 * ni / total:5.1f}% {fi[:60]}")

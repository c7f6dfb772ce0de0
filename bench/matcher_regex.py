"""History's subject regex under a backtracking engine (Python's `re`, like MongoDB's PCRE): the worst cases
against a simple baseline pattern timed in the same run, printed as ratios against a bound.

Cases, each matched against adversarial keys of the maximum routing-key length (255 bytes) that fail late:
- 100 `#` in a row (collapsed to one), as a request could send it before the wildcard cap;
- the worst pattern under the cap: 16 wildcards as floating chunks `a.#.b.#.b ... #.c` against `a.b.b.b ...`;
- for contrast, the previous regex shape (a nested group per `#`) and the flat regex without atomic groups
  (what FerretDB's RE2 gets), on growing numbers of `#` until one match takes over 0.2 s.

Seconds to run. Prints only; nothing is asserted.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tributary_common.matcher import MAX_WILDCARDS, matches, pattern_to_regex

BOUND = 20.0  # a worst case may cost at most this many times the baseline per key


def per_match(regex: str, key: str, budget_s: float = 0.2) -> float:
    """Seconds per `search` of `key`, averaged over repetitions filling about `budget_s`."""
    compiled = re.compile(regex)
    compiled.search(key)
    n, elapsed = 1, 0.0
    while elapsed < budget_s:
        t0 = time.perf_counter()
        for _ in range(n):
            compiled.search(key)
        elapsed = time.perf_counter() - t0
        if elapsed < budget_s:
            n *= 4
    return elapsed / n


def old_regex(pattern: str) -> str:
    """The regex before issue 10: every `#` a repeated group of a quantified segment (nested quantifiers)."""
    sep = r"(?:^|\.)"
    parts = []
    for tok in pattern.split("."):
        if tok == "#":
            parts.append(f"(?:{sep}[^.]+)*")
        elif tok == "*":
            parts.append(f"{sep}[^.]+")
        else:
            parts.append(sep + re.escape(tok))
    return "^" + "".join(parts) + "$"


def floating(hashes: int) -> str:
    """`a.#.b.#.b ... #.c`: `hashes` floating `#`, each followed by a chunk that matches almost everywhere."""
    return ".".join(["a", *(["#", "b"] * (hashes - 1)), "#", "c"])


def growth(label: str, make: Callable[[int], str], key: str, limit_s: float = 0.2) -> None:
    print(f"  {label}:")
    for hashes in range(1, 12):
        compiled = re.compile(make(hashes))
        t0 = time.perf_counter()
        compiled.search(key)
        took = time.perf_counter() - t0
        print(f"    {hashes:2d} '#': {took * 1e6:12.1f} us per key")
        if took > limit_s:
            print(f"    ... {hashes + 1} '#' would take several times longer: stopped")
            return


def main() -> None:
    key_b = "a." + ".".join(["b"] * 126)  # 255 bytes, no `c`: every floating chunk fits, the end never does
    key_x = ".".join(["x"] * 127) + ".y"  # 255 bytes
    assert len(key_b) <= 255 and len(key_x) <= 255
    # Baseline: a pattern without wildcards equal to the key, so the engine reads all 255 bytes once.
    baseline = per_match(pattern_to_regex(key_x), key_x)
    print(f"baseline (a literal 255-byte pattern on its key): {baseline * 1e6:.2f} us per key")

    worst_cap = floating(MAX_WILDCARDS)
    hundred = ".".join(["#"] * 100 + ["y", "z"])
    cases = {
        "100 '#' in a row (collapsed)": (hundred, key_x),
        f"{MAX_WILDCARDS} floating '#' (the cap), atomic": (worst_cap, key_b),
    }
    worst_ratio = 0.0
    for label, (pattern, key) in cases.items():
        assert bool(re.search(pattern_to_regex(pattern), key)) == matches(pattern, key)
        t = per_match(pattern_to_regex(pattern), key)
        ratio = t / baseline
        worst_ratio = max(worst_ratio, ratio)
        print(f"{label}: {t * 1e6:.2f} us per key, {ratio:.1f}x baseline")
    verdict = "within" if worst_ratio <= BOUND else "OVER"
    print(f"worst ratio {worst_ratio:.1f}x: {verdict} the bound of {BOUND:.0f}x the baseline")

    print("for contrast, one key each (Python re, single run):")
    growth(
        "previous regex (nested group per '#'), '#' in a row",
        lambda n: old_regex(".".join(["#"] * n + ["y", "z"])),
        key_x,
    )
    growth(
        "flat regex without atomic groups (RE2 dialect), floating '#'",
        lambda n: pattern_to_regex(floating(n), atomic=False),
        key_b,
    )


if __name__ == "__main__":
    main()

"""AMQP topic-pattern matching with exactly RabbitMQ's semantics.

`*` matches exactly one segment, `#` matches zero or more. The same functions serve broker bindings,
history queries (`pattern_to_regex` for the database) and ACL checks (`pattern_covers`).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache


@lru_cache(maxsize=4096)
def _tokens(s: str) -> tuple[str, ...]:
    return tuple(s.split("."))


def matches(pattern: str, key: str) -> bool:
    """True when RabbitMQ would route a message with routing key `key` to a binding `pattern`."""
    return _match(_tokens(pattern), _tokens(key))


def _match(pat: tuple[str, ...], key: tuple[str, ...]) -> bool:
    # Iterative matcher with backtracking on the last `#` (like glob `*` matching).
    p = k = 0
    star_p = star_k = -1
    while k < len(key):
        if p < len(pat) and pat[p] == "#":
            star_p, star_k = p, k
            p += 1
        elif p < len(pat) and (pat[p] == "*" or pat[p] == key[k]):
            p += 1
            k += 1
        elif star_p >= 0:
            star_k += 1
            k = star_k
            p = star_p + 1
        else:
            return False
    while p < len(pat) and pat[p] == "#":
        p += 1
    return p == len(pat)


# Wildcards (`*` and `#`) one pattern may hold wherever patterns enter (history, subscriptions, ACL claims):
# matching cost grows with them, and no real routing scheme needs more.
MAX_WILDCARDS = 16


def count_wildcards(pattern: str) -> int:
    return sum(1 for t in _tokens(pattern) if t in ("*", "#"))


def normalize_pattern(pattern: str) -> str:
    """The same pattern with each run of wildcards as its `*`s then at most one `#` (`#.#` is `#`)."""
    return ".".join(_normalize(_tokens(pattern)))


# `#` between two chunks: one dot (zero segments) or a dot, anything, a dot (one or more segments). An
# alternation, not `(?:\..*)?`: no group around a quantifier.
_SKIP = r"(?:\.|\..*?\.)"
# `#` before the first chunk: nothing, or anything ending with a dot.
_SKIP_START = r"(?:|.*?\.)"


@lru_cache(maxsize=1024)
def pattern_to_regex(pattern: str, *, atomic: bool = True) -> str:
    """An anchored regular expression matching the same routing keys as `pattern` (for a database `$regex`).

    No quantified group contains a quantifier. The pattern is normalized (`#.#` is `#`), then cut at its `#`s
    into chunks of fixed length (literals and `*`), each written with `[^.]+` for `*`. The first chunk is
    anchored at the start, the last at the end; each `#` becomes `.*?` between dots. With several `#`, a
    backtracking engine (MongoDB's PCRE, Python's re) would still try every placement of the middle chunks on a
    key that fails late: combinatorial. Placing each middle chunk at its leftmost fit is always right (a later
    fit leaves fewer keys for the rest), so with `atomic` each one is an atomic group that is never revisited:
    linear. `atomic=False` is for RE2 (FerretDB's Go regexp: no atomic groups or lookarounds, linear anyway).
    """
    tokens = _normalize(_tokens(pattern))

    def segs(chunk: list[str]) -> str:
        return r"\.".join("[^.]+" if t == "*" else re.escape(t) for t in chunk)

    chunks: list[list[str]] = [[]]
    for t in tokens:
        if t == "#":
            chunks.append([])
        else:
            chunks[-1].append(t)
    if len(chunks) == 1:
        return "^" + segs(chunks[0]) + "$"
    first, *middle, last = chunks
    out = "^" + segs(first)
    for chunk in middle:  # never empty: runs of `#` are collapsed
        body = (_SKIP if out != "^" else _SKIP_START) + segs(chunk)
        # The chunk must end a segment; inside the atomic group, or a later match could never be tried.
        out += f"(?>{body}(?=\\.|$))" if atomic else body
    if last:
        return out + (_SKIP if out != "^" else _SKIP_START) + segs(last) + "$"
    # A trailing `#`: the previous chunk ends a segment; whatever follows is more segments.
    return out + (r"(?:\.|$)" if out != "^" else "")


def _normalize(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Within a run of wildcards, `#` commutes with `*`: put the `*`s first and keep at most one `#`."""
    out: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if "#" in run:
            out.extend(["*"] * run.count("*") + ["#"])
        else:
            out.extend(run)
        run.clear()

    for t in tokens:
        if t in ("*", "#"):
            run.append(t)
        else:
            flush()
            out.append(t)
    flush()
    return tuple(out)


def pattern_covers(outer: str, inner: str) -> bool:
    """True when every routing key matched by `inner` is also matched by `outer` (for ACL checks).

    Conservative: where it cannot prove coverage it says no, so an ACL never grants more than it names.
    """
    a = _normalize(_tokens(outer))
    b = _normalize(_tokens(inner))

    @cache
    def cov(i: int, j: int) -> bool:
        if i == len(a):
            return j == len(b)
        if a[i] == "#":
            # `#` absorbs zero or more of inner's tokens, whatever they are.
            return any(cov(i + 1, jj) for jj in range(j, len(b) + 1))
        if j == len(b):
            return False
        if b[j] == "#":
            return False
        if a[i] == "*":
            return cov(i + 1, j + 1)
        return a[i] == b[j] and cov(i + 1, j + 1)

    return cov(0, 0)


def pattern_topic(pattern: str) -> str | None:
    """The one topic `pattern` names in its first segment, or None when that segment is a wildcard."""
    first = pattern.split(".", 1)[0]
    return None if first in ("*", "#") else first


def topic_may_match(pattern: str, topic: str) -> bool:
    """True when `pattern` can match some routing key of `topic` (`<topic>` or `<topic>.<subject>`)."""
    named = pattern_topic(pattern)
    return named is None or named == topic

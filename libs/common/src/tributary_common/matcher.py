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


@lru_cache(maxsize=1024)
def pattern_to_regex(pattern: str) -> str:
    """A regular expression (Python and MongoDB/PCRE compatible) that matches the same routing keys.

    Each segment is preceded by `(?:^|\\.)`: the start of the key or a dot. `^` can only hold at position 0,
    so only the first segment may skip its dot, which lets `#` match zero segments anywhere.
    """
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


def topic_may_match(pattern: str, topic: str) -> bool:
    """True when `pattern` can match some routing key of `topic` (`<topic>` or `<topic>.<subject>`)."""
    first = pattern.split(".", 1)[0]
    return first in ("#", "*", topic)

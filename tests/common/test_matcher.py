"""The AMQP topic matcher: pure properties here; agreement with the real broker in test_routing_broker.py."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_common.matcher import matches, pattern_covers, pattern_to_regex

SEGS = ["a", "b", "c"]
keys_st = st.lists(st.sampled_from(SEGS), min_size=1, max_size=5).map(".".join)
patterns_st = st.lists(st.sampled_from([*SEGS, "*", "#"]), min_size=1, max_size=5).map(".".join)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a.#", "a", True),  # `#` matches zero segments
        ("#.a", "a", True),
        ("a.#.b", "a.b", True),
        ("a.#.b", "a.x.y.b", True),
        ("#", "a.b.c", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.*", "a", False),  # `*` needs exactly one segment
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.b.c", False),
        ("#.#", "a", True),
        ("*.#", "a", True),
        ("#.*.#", "a.b", True),
        ("orders.eu.#", "orders.eu", True),
        ("orders.eu.#", "orders.us.x", False),
        ("a.b", "a.b", True),
        ("a.b", "a.bb", False),
    ],
)
def test_known_cases(pattern: str, key: str, expected: bool) -> None:
    assert matches(pattern, key) is expected


def _reference(pattern: str, key: str) -> bool:
    """Straightforward recursive definition of RabbitMQ's topic matching."""

    def rec(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(rec(p[1:], k[i:]) for i in range(len(k) + 1))
        if not k:
            return False
        return (p[0] == "*" or p[0] == k[0]) and rec(p[1:], k[1:])

    return rec(pattern.split("."), key.split("."))


@given(patterns_st, keys_st)
def test_matcher_agrees_with_reference(pattern: str, key: str) -> None:
    assert matches(pattern, key) == _reference(pattern, key)


@given(patterns_st, keys_st)
def test_regex_agrees_with_matcher(pattern: str, key: str) -> None:
    assert bool(re.fullmatch(pattern_to_regex(pattern), key)) == matches(pattern, key)


ALL_KEYS = [".".join(p) for n in range(1, 5) for p in itertools.product(SEGS, repeat=n)]


@given(patterns_st, patterns_st)
def test_covers_is_sound(outer: str, inner: str) -> None:
    """If `outer` covers `inner`, no key matched by `inner` escapes `outer` (ACLs never over-grant)."""
    if pattern_covers(outer, inner):
        for key in ALL_KEYS:
            if matches(inner, key):
                assert matches(outer, key), (outer, inner, key)


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("#", "a.#", True),
        ("orders.#", "orders.eu.#", True),
        ("orders.eu.#", "orders.#", False),
        ("orders.*", "orders.eu", True),
        ("orders.*", "orders.#", False),
        ("#.*", "*.#", True),  # same language, written differently
        ("a.*.c", "a.b.c", True),
        ("a.b", "a.*", False),
    ],
)
def test_covers_known_cases(outer: str, inner: str, expected: bool) -> None:
    assert pattern_covers(outer, inner) is expected

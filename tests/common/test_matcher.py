"""The AMQP topic matcher: pure properties here; agreement with the real broker in test_routing_broker.py."""

from __future__ import annotations

import itertools
import re
import re._parser as re_parser
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tributary_common.auth import AuthError, principal_from_claims
from tributary_common.matcher import (
    MAX_WILDCARDS,
    count_wildcards,
    matches,
    normalize_pattern,
    pattern_covers,
    pattern_to_regex,
    pattern_topic,
)
from tributary_common.names import InvalidName, validate_pattern

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
    assert bool(re.search(pattern_to_regex(pattern), key)) == matches(pattern, key)


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


# --- The regex sent to the database (issue 10 item 9) ---------------------------------------------------------

long_patterns_st = st.lists(st.sampled_from([*SEGS, "*", "#"]), min_size=1, max_size=9).map(".".join)
long_keys_st = st.lists(st.sampled_from(SEGS), min_size=1, max_size=9).map(".".join)


def _repeats_inside(items: Any) -> bool:
    """True when the parsed (sub)pattern `items` contains a repeat anywhere."""
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            return True
        if _children_repeat(name, arg):
            return True
    return False


def _children_repeat(name: str, arg: Any) -> bool:
    if name == "SUBPATTERN":
        return _repeats_inside(arg[-1])
    if name in ("ATOMIC_GROUP",):
        return _repeats_inside(arg)
    if name in ("ASSERT", "ASSERT_NOT"):
        return _repeats_inside(arg[1])
    if name == "BRANCH":
        return any(_repeats_inside(b) for b in arg[1])
    return False


def _nested_quantifiers(items: Any) -> list[str]:
    """Every quantified group whose body holds another quantifier (the shape that backtracks exponentially)."""
    found: list[str] = []
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            if _repeats_inside(arg[2]):
                found.append(f"{name}{arg[:2]}")
            found += _nested_quantifiers(arg[2])
        elif name == "SUBPATTERN":
            found += _nested_quantifiers(arg[-1])
        elif name == "ATOMIC_GROUP":
            found += _nested_quantifiers(arg)
        elif name in ("ASSERT", "ASSERT_NOT"):
            found += _nested_quantifiers(arg[1])
        elif name == "BRANCH":
            for b in arg[1]:
                found += _nested_quantifiers(b)
    return found


def test_shape_checker_sees_nested_quantifiers() -> None:
    """The checker itself: it flags the old shape `(?:(?:^|\\.)[^.]+)*` and passes a flat one."""
    assert _nested_quantifiers(re_parser.parse(r"^a(?:(?:^|\.)[^.]+)*$"))
    assert not _nested_quantifiers(re_parser.parse(r"^a(?:\.|\..*\.)b$"))


@pytest.mark.parametrize("atomic", [True, False])
@given(pattern=long_patterns_st)
def test_regex_has_no_nested_quantifier(atomic: bool, pattern: str) -> None:
    rx = pattern_to_regex(pattern, atomic=atomic)
    assert _nested_quantifiers(re_parser.parse(rx)) == [], (pattern, rx)


@pytest.mark.parametrize("atomic", [True, False])
@given(pattern=long_patterns_st, key=long_keys_st)
def test_both_regex_dialects_agree_with_matcher(atomic: bool, pattern: str, key: str) -> None:
    """`re.search` is what MongoDB's `$regex` does (unanchored unless the regex anchors itself)."""
    rx = pattern_to_regex(pattern, atomic=atomic)
    assert bool(re.search(rx, key)) == matches(pattern, key), (pattern, key, rx)


def test_portable_dialect_has_no_atomic_groups_or_lookarounds() -> None:
    """RE2 (FerretDB's Go regexp) knows neither `(?>` nor `(?=`."""
    for pattern in ("#.a.#.b.#", "a.*.#.b.#.c", "#.a", "a.#", "#"):
        rx = pattern_to_regex(pattern, atomic=False)
        assert "(?>" not in rx and "(?=" not in rx and "(?!" not in rx, rx


def test_consecutive_hashes_collapse() -> None:
    assert pattern_to_regex("a.#.#.#.b") == pattern_to_regex("a.#.b")
    assert pattern_to_regex("#.#") == pattern_to_regex("#")
    assert pattern_to_regex("a.#.*.#.b") == pattern_to_regex("a.*.#.b")
    assert normalize_pattern("#.#.a.#.*.#") == "#.a.*.#"
    hundred = ".".join(["#"] * 100)
    assert pattern_to_regex(hundred) == pattern_to_regex("#")


def test_worst_case_is_fast_in_a_backtracking_engine() -> None:
    """Many floating chunks that almost match: the old regex (and a flat one without atomic groups) backtracks
    through every way to place them; this one places each chunk once. Not a timing assertion: a step count
    proxy, the engine must answer on a long key at all (the bench prints the times)."""
    pattern = ".".join(["a", *(["#", "b"] * 7), "#", "c"])
    key = "a." + ".".join(["b"] * 120)
    assert count_wildcards(pattern) == 8
    assert re.search(pattern_to_regex(pattern), key) is None
    assert re.search(pattern_to_regex(pattern), key + ".c") is not None


@pytest.mark.parametrize(
    ("pattern", "ok"),
    [
        (".".join(["*"] * MAX_WILDCARDS), True),
        (".".join(["*"] * (MAX_WILDCARDS + 1)), False),
        (".".join(["#"] * (MAX_WILDCARDS + 1)), False),
        (".".join(["a", "#"] * MAX_WILDCARDS), True),
        (".".join(["a", "#"] * (MAX_WILDCARDS + 1)), False),
    ],
)
def test_wildcard_cap_in_the_shared_validation(pattern: str, ok: bool) -> None:
    if ok:
        assert validate_pattern(pattern) == pattern
    else:
        with pytest.raises(InvalidName, match=f"at most {MAX_WILDCARDS} wildcards"):
            validate_pattern(pattern)


def test_acl_claims_are_validated_patterns() -> None:
    too_many = ".".join(["#"] * (MAX_WILDCARDS + 1))
    with pytest.raises(AuthError, match="wildcards"):
        principal_from_claims({"sub": "x", "scope": "events:read", "topics": [too_many]})
    with pytest.raises(AuthError, match="pattern"):
        principal_from_claims({"sub": "x", "scope": "events:read", "topics": ["a..b"]})
    assert principal_from_claims({"sub": "x", "scope": "", "topics": ["orders.#"]}).topics == ("orders.#",)


def test_pattern_topic_is_the_first_segment_unless_a_wildcard() -> None:
    assert [pattern_topic(p) for p in ("orders.#", "orders", "*.eu", "#", "#.x")] == [
        "orders",
        "orders",
        None,
        None,
        None,
    ]

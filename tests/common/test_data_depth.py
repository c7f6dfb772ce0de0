"""`nests_deeper_than`: how deep a JSON value nests, for any shape, without recursing."""

from __future__ import annotations

from typing import Any

import pytest

from tributary_common.json_depth import nests_deeper_than


def chain(levels: int, leaf: Any = 1, *, arrays: bool = False) -> Any:
    value = leaf
    for _ in range(levels):
        value = [value] if arrays else {"a": value}
    return value


@pytest.mark.parametrize(
    ("value", "levels"),
    [
        (1, 0),
        ("text", 0),
        (None, 0),
        ({}, 1),
        ([], 1),
        ({"value": 21.5, "unit": "C"}, 1),
        ({"a": [1, {"b": 2}]}, 3),
        ([[], [[[]]], []], 4),
        (chain(100), 100),
        (chain(100, arrays=True), 100),
        ({"wide": list(range(10_000)), "deep": chain(7)}, 8),
    ],
)
def test_the_deepest_branch_counts(value: Any, levels: int) -> None:
    assert not nests_deeper_than(value, levels)
    assert nests_deeper_than(value, levels - 1) is (levels > 0)


def test_far_deeper_than_python_recurses() -> None:
    assert nests_deeper_than(chain(100_000), 100)
    assert not nests_deeper_than(chain(100_000), 100_000)

"""How deep a JSON value nests, measured without recursion: the limits on event data and subscription params."""

from __future__ import annotations

from typing import Any


def nests_deeper_than(value: Any, limit: int) -> bool:
    """Whether a JSON value holds objects or arrays more than `limit` levels deep (`{}` is one level). Iterative,
    so that no input can recurse, and only containers are visited: a flat reading costs one pass over its values."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False

"""The canonical form of a subscription's params, from the source's announced JSON Schema: what a `sid` hashes.

One tag written two ways must be one subscription, read once and stored once. After validation, params are
brought to one form:
- numbers follow the schema's `type`: a `number` field holds a float (`60` -> `60.0`), an `integer` field an int
  (`1.0` -> `1`), as the connector's model would make them; a field allowing both keeps what was given;
- a value equal to the field's `default` is left out (`"port": 1883` where 1883 is the default). Leaving
  defaults out, rather than spelling them in, keeps every stored sid when a connector adds an optional field;
- secret fields (`x-tributary-secret`) are kept exactly as given: the reference, never a value, is hashed.

Everything else (strings, key order aside) is kept as given. The walk is bounded: schemas and params come from
other processes and users.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .secrets import SECRET_MARKER, Path, pattern_matches, pointer
from .sid import canonical_json, compute_sid

_MAX_DEPTH = 32
# What orjson (storage) and every JSON consumer on the way can hold without loss.
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class UnrepresentableParams(ValueError):
    """A number no JSON consumer on the way can hold (non-finite, or an integer beyond 64 bits)."""

    def __init__(self, path: Path, msg: str) -> None:
        super().__init__(f"{pointer(path) or '/'}: {msg}")
        self.loc = pointer(path)
        self.msg = msg


def canonical_params(schema: Mapping[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """`params` (already valid against `schema`) in canonical form; raises `UnrepresentableParams`."""
    out = _Walk(schema).value(schema, params, (), 0)
    return out if isinstance(out, dict) else params


def canonical_sid(source: str, schema: Mapping[str, Any], params: dict[str, Any]) -> str:
    """The sid of `params` in canonical form: the same for every spelling of one subscription."""
    return compute_sid(source, canonical_params(schema, params))


def _types(node: Mapping[str, Any]) -> set[str]:
    t = node.get("type")
    if isinstance(t, str):
        return {t}
    if isinstance(t, list):
        return {x for x in t if isinstance(x, str)}
    return set()


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


class _Walk:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def deref(self, node: Any, depth: int) -> Any:
        """Follow local `$ref`s (siblings of a `$ref` are annotations here: `default`, `description`)."""
        while isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and depth <= _MAX_DEPTH:
            ref: str = node["$ref"]
            if not ref.startswith("#/"):
                return None
            target: Any = self.root
            for token in ref[2:].split("/"):
                token = token.replace("~1", "/").replace("~0", "~")
                target = target.get(token) if isinstance(target, Mapping) else None
            node, depth = target, depth + 1
        return node if isinstance(node, Mapping) else None

    def admits(self, node: Any, value: Any, depth: int) -> bool:
        """Whether `value`'s JSON type is one `node` allows (a node that says nothing allows all)."""
        node = self.deref(node, depth)
        if node is None:
            return False
        kind = _json_type(value)
        branches = node.get("anyOf") or node.get("oneOf")
        if isinstance(branches, list) and "type" not in node:
            return any(self.admits(b, value, depth + 1) for b in branches)
        types = _types(node)
        if not types:
            return True
        if kind == "number":
            return bool(types & {"number", "integer"})
        return kind in types

    def value(self, node: Any, value: Any, path: Path, depth: int) -> Any:
        node = self.deref(node, depth)
        self.check_number(value, path)
        if node is None or depth > _MAX_DEPTH:
            return self.checked(value, path, depth)
        if node.get(SECRET_MARKER) is True:
            return self.checked(value, path, depth)
        branches = node.get("anyOf") or node.get("oneOf")
        if isinstance(branches, list):
            fitting = [b for b in branches if self.admits(b, value, depth + 1)]
            if len(fitting) == 1:
                return self.value(fitting[0], value, path, depth + 1)
            if isinstance(value, int | float) and not isinstance(value, bool):
                kinds = set().union(*(_types(self.deref(b, depth + 1) or {}) for b in fitting))
                return self.number(value, kinds, path)
            return self.checked(value, path, depth)  # ambiguous: kept as given
        all_of = node.get("allOf")
        if isinstance(all_of, list) and len(all_of) == 1 and "type" not in node:
            return self.value(all_of[0], value, path, depth + 1)
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int | float):
            return self.number(value, _types(node), path)
        if isinstance(value, list):
            return self.array(node, value, path, depth)
        if isinstance(value, dict):
            return self.object(node, value, path, depth)
        return value

    def number(self, value: int | float, types: set[str], path: Path) -> int | float:
        if "integer" in types and "number" not in types:
            if isinstance(value, float) and value.is_integer():
                value = int(value)
        elif "number" in types and "integer" not in types and isinstance(value, int):
            value = float(value)  # finite: a 64-bit integer was checked before
        if isinstance(value, float) and value == 0.0:
            value = 0.0  # -0.0 is the same number
        self.check_number(value, path)
        return value

    @staticmethod
    def check_number(value: Any, path: Path) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            raise UnrepresentableParams(path, "a number must be finite")
        if isinstance(value, int) and not isinstance(value, bool) and not _INT_MIN <= value <= _INT_MAX:
            raise UnrepresentableParams(path, "an integer must fit in 64 bits")

    def checked(self, value: Any, path: Path, depth: int) -> Any:
        """`value` kept as given, its numbers still checked for what storage can hold."""
        if depth > _MAX_DEPTH * 4:
            return value  # a request body cannot nest this deep; the hub's own limits apply before
        if isinstance(value, dict):
            for k, v in value.items():
                self.check_number(v, (*path, k))
                self.checked(v, (*path, k), depth + 1)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.check_number(v, (*path, i))
                self.checked(v, (*path, i), depth + 1)
        return value

    def array(self, node: Mapping[str, Any], value: list[Any], path: Path, depth: int) -> list[Any]:
        items, prefix = node.get("items"), node.get("prefixItems")
        out = []
        for i, v in enumerate(value):
            sub = prefix[i] if isinstance(prefix, list) and i < len(prefix) else items
            out.append(self.value(sub, v, (*path, i), depth + 1))
        return out

    def object(self, node: Mapping[str, Any], value: dict[str, Any], path: Path, depth: int) -> dict[str, Any]:
        props = node.get("properties")
        props = props if isinstance(props, Mapping) else {}
        extra = node.get("additionalProperties")
        patterns = node.get("patternProperties")
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k in props:
                prop = props[k]
                canon = self.value(prop, v, (*path, k), depth + 1)
                if isinstance(prop, Mapping) and "default" in prop and self.is_default(prop, canon, path, depth):
                    continue
                out[k] = canon
                continue
            sub = extra
            if isinstance(patterns, Mapping):
                matching = [s for p, s in patterns.items() if pattern_matches(p, k)]
                if matching:
                    sub = matching[0] if len(matching) == 1 else None
            out[k] = self.value(sub, v, (*path, k), depth + 1)
        return out

    def is_default(self, prop: Mapping[str, Any], canon: Any, path: Path, depth: int) -> bool:
        try:
            default = self.value(prop, prop["default"], path, depth + 1)
            return canonical_json(default) == canonical_json(canon)
        except (ValueError, TypeError):  # a default no JSON can hold: never equal to a given value
            return False

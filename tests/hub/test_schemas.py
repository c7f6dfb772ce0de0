"""Schema acceptance and the hot-path validator: jsonschema-rs agrees with jsonschema (formats on in both)."""

from __future__ import annotations

from typing import Any

import pytest

from tributary_hub.schemas import SchemaRejected, check_schema, compile_schema, depth, reference_validator, violations

CORPUS: list[tuple[dict[str, Any], list[Any]]] = [
    (
        {"type": "object", "required": ["temp"], "properties": {"temp": {"type": "number"}}},
        [{"temp": 1}, {"temp": 1.5}, {"temp": "1"}, {}, {"temp": None}, [], "x", {"temp": True}],
    ),
    (
        {"type": "string", "format": "date-time"},
        [
            "2026-11-26T10:00:00Z",
            "2026-11-26T10:00:00.123456+01:00",
            "2026-11-26 10:00:00",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-11-26T25:00:00Z",
            5,
        ],
    ),
    ({"type": "string", "format": "date"}, ["2026-11-26", "2026-02-30", "26-11-2026"]),
    ({"type": "string", "format": "ipv4"}, ["10.0.0.1", "256.0.0.1", "10.0.0"]),
    ({"type": "string", "format": "uuid"}, ["0192b0a4-7c1e-7d2a-9f00-1c2d3e4f5a6b", "not-a-uuid"]),
    ({"type": "string", "format": "email"}, ["a@example.com", "nope"]),
    ({"type": "integer", "minimum": 0, "exclusiveMaximum": 10}, [0, 9, 10, -1, 1.0, 1.5, "3"]),
    ({"type": "number", "multipleOf": 0.5}, [1, 1.5, 1.25]),
    (
        {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 1, "uniqueItems": True},
        [["a"], [], ["abcd"], ["a", "a"], ["a", 1]],
    ),
    ({"enum": ["C", "F", 1, None]}, ["C", "K", 1, None, 2]),
    ({"const": {"a": 1}}, [{"a": 1}, {"a": 2}]),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False},
        [{"a": "x"}, {"a": "x", "b": 1}, {}],
    ),
    ({"type": "object", "patternProperties": {"^x-": {"type": "integer"}}}, [{"x-a": 1}, {"x-a": "1"}, {"y": "1"}]),
    ({"oneOf": [{"type": "integer"}, {"minimum": 2}]}, [1, 3, 2.5, "a"]),
    ({"anyOf": [{"type": "string"}, {"type": "null"}]}, ["a", None, 1]),
    ({"not": {"type": "string"}}, [1, "a"]),
    ({"if": {"properties": {"k": {"const": 1}}}, "then": {"required": ["v"]}}, [{"k": 1}, {"k": 1, "v": 0}, {"k": 2}]),
    (
        {"$defs": {"pos": {"type": "integer", "minimum": 1}}, "type": "array", "items": {"$ref": "#/$defs/pos"}},
        [[1, 2], [0], ["a"]],
    ),
    (
        {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False},
        [["a", 1], ["a", 1, 2], [1, "a"]],
    ),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, [{"a": 1, "b": 2}, {"a": 1}]),
    ({"type": "string", "pattern": "^[A-Z]{2}[0-9]+$"}, ["AB12", "ab12", "AB"]),
    ({"type": "object", "unevaluatedProperties": False, "properties": {"a": {}}}, [{"a": 1}, {"b": 1}]),
]


@pytest.mark.parametrize(("schema", "instances"), CORPUS)
def test_fast_validator_agrees_with_jsonschema(schema: dict[str, Any], instances: list[Any]) -> None:
    fast = compile_schema(schema)
    reference = reference_validator(schema)
    for instance in instances:
        assert fast.is_valid(instance) == reference.is_valid(instance), (schema, instance)
        # Every violation jsonschema finds at a location, jsonschema-rs reports at that location too.
        ref_locs = {"/data" + "".join(f"/{p}" for p in e.absolute_path) for e in reference.iter_errors(instance)}
        fast_locs = {v.loc for v in violations(fast, instance, "/data")}
        assert bool(ref_locs) == bool(fast_locs), (schema, instance)


def test_every_violation_is_reported_with_its_pointer() -> None:
    schema = {
        "type": "object",
        "properties": {
            "temp": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "a/b": {"type": "integer"},
        },
        "required": ["temp", "id"],
    }
    found = violations(compile_schema(schema), {"temp": "hot", "tags": ["ok", 3], "a/b": "x"}, "/data")
    locs = sorted(v.loc for v in found)
    assert locs == ["/data", "/data/a~1b", "/data/tags/1", "/data/temp"]
    assert any("id" in v.msg for v in found if v.loc == "/data")


def test_schema_acceptance_rules() -> None:
    ok = {"type": "object", "properties": {"a": {"type": "string"}}}
    check_schema(ok, max_bytes=10_000, max_depth=10)
    with pytest.raises(SchemaRejected) as bad_type:
        check_schema({"type": "strin"}, max_bytes=10_000, max_depth=10)
    assert bad_type.value.problems[0].loc == "/schema/type"
    with pytest.raises(SchemaRejected) as too_big:
        check_schema({"description": "x" * 500}, max_bytes=200, max_depth=10)
    assert too_big.value.too_large
    nested: dict[str, Any] = {"type": "object"}
    for _ in range(12):
        nested = {"type": "object", "properties": {"x": nested}}
    with pytest.raises(SchemaRejected, match="levels deep"):
        check_schema(nested, max_bytes=100_000, max_depth=10)
    with pytest.raises(SchemaRejected, match="Draft 2020-12"):
        check_schema({"$schema": "http://json-schema.org/draft-07/schema#"}, max_bytes=10_000, max_depth=10)
    with pytest.raises(SchemaRejected, match="does not compile"):
        check_schema({"$ref": "https://example.com/remote.json"}, max_bytes=10_000, max_depth=10)
    with pytest.raises(SchemaRejected, match="does not compile"):
        check_schema({"$ref": "#/$defs/missing"}, max_bytes=10_000, max_depth=10)
    with pytest.raises(SchemaRejected):
        check_schema(["not", "an", "object"], max_bytes=10_000, max_depth=10)


def test_depth() -> None:
    assert depth(1) == 0
    assert depth({}) == 1
    assert depth({"a": [{"b": 1}]}) == 3

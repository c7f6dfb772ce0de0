"""JSON Schema handling (domain logic, no I/O): acceptance checks when a schema is created, compiled
validators for the hot path, and violations reported with JSON pointers.

Acceptance uses `jsonschema`'s Draft 2020-12 meta-schema; validation uses `jsonschema-rs` (compiled once per
topic+version), with format checking on in both so that their verdicts agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import jsonschema_rs
import orjson

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
MAX_VIOLATIONS = 100


@dataclass(frozen=True)
class SchemaProblem:
    loc: str
    msg: str


class SchemaRejected(ValueError):
    """The schema cannot be accepted; `problems` say where and why. `too_large` selects a 413."""

    def __init__(self, message: str, problems: list[SchemaProblem], *, too_large: bool = False) -> None:
        super().__init__(message)
        self.problems = problems
        self.too_large = too_large


def pointer(parts: Iterator[Any] | list[Any] | tuple[Any, ...]) -> str:
    """A JSON pointer (RFC 6901) from path parts: `~` and `/` escaped."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def depth(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0, `{}` is 1), iteratively so that no input can recurse deeply."""
    best = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, dict):
            best = max(best, d + 1)
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            best = max(best, d + 1)
            stack.extend((v, d + 1) for v in node)
    return best


def check_schema(schema: Any, *, max_bytes: int, max_depth: int) -> None:
    """Raise `SchemaRejected` unless `schema` is a Draft 2020-12 schema within the limits that compiles."""
    # The depth first: orjson refuses to write what nests deeper than 254 levels (a TypeError, which was a 500).
    d = depth(schema)
    if d > max_depth:
        raise SchemaRejected(
            f"schema nests {d} levels deep, over the limit of {max_depth}",
            [SchemaProblem("/schema", f"depth {d} > {max_depth}")],
        )
    size = len(orjson.dumps(schema))
    if size > max_bytes:
        raise SchemaRejected(
            f"schema is {size} bytes, over the limit of {max_bytes}",
            [SchemaProblem("/schema", f"{size} bytes > {max_bytes}")],
            too_large=True,
        )
    if not isinstance(schema, dict):
        raise SchemaRejected("schema must be a JSON object", [SchemaProblem("/schema", "not an object")])
    declared = schema.get("$schema")
    if declared is not None and str(declared).rstrip("#") != DRAFT_2020_12:
        raise SchemaRejected(
            f"only Draft 2020-12 schemas are accepted; $schema is {declared!r}",
            [SchemaProblem("/schema/$schema", f"must be {DRAFT_2020_12!r} or absent")],
        )
    meta = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)
    problems = [
        SchemaProblem("/schema" + pointer(e.absolute_path), e.message)
        for e in sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    ][:MAX_VIOLATIONS]
    if problems:
        raise SchemaRejected("schema is not a valid Draft 2020-12 JSON Schema", problems)
    try:
        compile_schema(schema)
    except (ValueError, jsonschema_rs.ValidationError, jsonschema_rs.ReferencingError) as exc:
        reason = str(exc).strip().split("\n", 1)[0]
        raise SchemaRejected(f"schema does not compile: {reason}", [SchemaProblem("/schema", reason)]) from exc


def compile_schema(schema: dict[str, Any]) -> jsonschema_rs.Draft202012Validator:
    """The hot-path validator. `offline`: a `$ref` is never fetched from the network."""
    return jsonschema_rs.Draft202012Validator(schema, validate_formats=True, offline=True)


def violations(validator: jsonschema_rs.Draft202012Validator, instance: Any, prefix: str) -> list[SchemaProblem]:
    """Every violation (up to MAX_VIOLATIONS), each located by a JSON pointer under `prefix` (e.g. `/data`)."""
    found: list[SchemaProblem] = []
    for error in validator.iter_errors(instance):
        found.append(SchemaProblem(prefix + pointer(error.instance_path), error.message))
        if len(found) >= MAX_VIOLATIONS:
            break
    return found


def reference_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """The `jsonschema` validator with format checking: the reference the fast validator is tested against."""
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

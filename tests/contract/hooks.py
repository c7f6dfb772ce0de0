"""Schemathesis hooks for the contract tests (loaded through SCHEMATHESIS_HOOKS): how to put on the wire the
media types Schemathesis has no serializer for. The document describes a JSON-lines body as the array of its
lines; each item goes on its own line."""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from schemathesis.transport import SerializationContext


@schemathesis.serializer("application/x-ndjson", "application/jsonl")
def json_lines(ctx: SerializationContext, value: Any) -> bytes:
    items = value if isinstance(value, list) else [value]
    # The standard library, not orjson: generated bodies may hold integers beyond 64 bits, which are valid JSON.
    return b"".join(json.dumps(item, ensure_ascii=False, allow_nan=False).encode() + b"\n" for item in items)

"""Schema compatibility between consecutive versions (domain logic, no I/O).

`backward`: the new schema accepts what the previous one accepted (consumers on the new version read old
events). `forward`: the previous schema accepts what the new one accepts (old consumers read new events).
`full`: both. Both directions reduce to one question, "does `reader` accept everything `writer` accepts?",
answered for the common structural changes: properties added or removed (with `additionalProperties`),
`required`, `type`, `enum`/`const`, numeric/length/size bounds, `pattern`, `format`, and `items`.
The check is conservative about what it names, and silent about constructs it does not model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from .schemas import pointer


class Compatibility(StrEnum):
    NONE = "none"
    BACKWARD = "backward"
    FORWARD = "forward"
    FULL = "full"


@dataclass(frozen=True)
class Break:
    loc: str  # JSON pointer into the schema
    msg: str


LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")


def check(mode: Compatibility | str, previous: dict[str, Any], new: dict[str, Any]) -> list[Break]:
    """The changes from `previous` to `new` that break `mode`; empty when compatible."""
    mode = Compatibility(mode)
    breaks: list[Break] = []
    if mode in (Compatibility.BACKWARD, Compatibility.FULL):
        breaks += [Break(b.loc, f"backward: {b.msg}") for b in reader_accepts(new, previous)]
    if mode in (Compatibility.FORWARD, Compatibility.FULL):
        breaks += [Break(b.loc, f"forward: {b.msg}") for b in reader_accepts(previous, new)]
    return breaks


def _types(schema: dict[str, Any]) -> set[str] | None:
    t = schema.get("type")
    if t is None:
        return None
    return {t} if isinstance(t, str) else set(t)


def _type_covered(reader: set[str], writer_type: str) -> bool:
    return writer_type in reader or (writer_type == "integer" and "number" in reader)


def reader_accepts(reader: Any, writer: Any, path: tuple[str, ...] = ()) -> list[Break]:
    """Why `reader` may reject a document `writer` accepts (empty: it accepts all we can tell)."""
    if reader is True or reader == {}:
        return []
    if writer is True or writer == {}:
        writer = {}
    if reader is False:
        return [] if writer is False else [Break(pointer(path), "the schema rejects everything")]
    if not isinstance(reader, dict) or not isinstance(writer, dict):
        return []
    loc = pointer(path)
    out: list[Break] = []

    rt, wt = _types(reader), _types(writer)
    if rt is not None:
        if wt is None:
            out.append(Break(loc + "/type", f"type is restricted to {sorted(rt)} where any type was allowed"))
        else:
            lost = sorted(t for t in wt if not _type_covered(rt, t))
            if lost:
                out.append(Break(loc + "/type", f"type no longer allows {lost}"))

    for kw in ("enum", "const"):
        if kw in reader:
            allowed = reader["enum"] if kw == "enum" else [reader["const"]]
            if "enum" in writer or "const" in writer:
                given = writer.get("enum", [writer.get("const")] if "const" in writer else [])
                # By set, not list (two enums of 8,000 values held the event loop for a second, both ways twice).
                allowed_keys = {_value_key(v) for v in allowed} if isinstance(allowed, list) else set()
                lost_values = [v for v in given if _value_key(v) not in allowed_keys] if isinstance(given, list) else []
                if lost_values:
                    out.append(Break(f"{loc}/{kw}", f"{kw} no longer allows {_listed(lost_values)}"))
            else:
                out.append(Break(f"{loc}/{kw}", f"{kw} restricts values that were unrestricted"))

    for kw in LOWER_BOUNDS:
        if kw in reader and (kw not in writer or _num(reader[kw]) > _num(writer[kw])):
            out.append(Break(f"{loc}/{kw}", f"{kw} raised to {reader[kw]} (was {writer.get(kw, 'unset')})"))
    for kw in UPPER_BOUNDS:
        if kw in reader and (kw not in writer or _num(reader[kw]) < _num(writer[kw])):
            out.append(Break(f"{loc}/{kw}", f"{kw} lowered to {reader[kw]} (was {writer.get(kw, 'unset')})"))
    for kw in ("pattern", "format", "multipleOf"):
        if kw in reader and reader[kw] != writer.get(kw):
            out.append(Break(f"{loc}/{kw}", f"{kw} changed to {reader[kw]!r} (was {writer.get(kw, 'unset')!r})"))

    r_req, w_req = set(reader.get("required", [])), set(writer.get("required", []))
    for name in sorted(r_req - w_req):
        out.append(Break(f"{loc}/required", f"property {name!r} is now required"))

    r_props: dict[str, Any] = reader.get("properties", {})
    w_props: dict[str, Any] = writer.get("properties", {})
    r_additional = reader.get("additionalProperties", True)
    for name, w_sub in w_props.items():
        if name in r_props:
            out += reader_accepts(r_props[name], w_sub, (*path, "properties", name))
        elif r_additional is False:
            out.append(Break(f"{loc}/properties/{name}", f"property {name!r} is no longer allowed"))
        elif isinstance(r_additional, dict):
            out += reader_accepts(r_additional, w_sub, (*path, "additionalProperties"))
    if r_additional is False and writer.get("additionalProperties", True) is not False:
        out.append(Break(f"{loc}/additionalProperties", "additional properties are no longer allowed"))

    if "items" in reader and "items" in writer:
        out += reader_accepts(reader["items"], writer["items"], (*path, "items"))
    elif "items" in reader:
        out += (
            [Break(f"{loc}/items", "array items are restricted where they were not")]
            if reader["items"]
            not in (
                True,
                {},
            )
            else []
        )
    return out


def _value_key(value: Any) -> Any:
    """A JSON value as a set member: itself when hashable (equal as Python compares it, as `in` did), else its
    canonical JSON text."""
    if isinstance(value, dict | list):
        return ("json", orjson.dumps(value, option=orjson.OPT_SORT_KEYS))
    return value


def _listed(values: list[Any], most: int = 10) -> str:
    more = f" and {len(values) - most} more" if len(values) > most else ""
    return f"{values[:most]}{more}"


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

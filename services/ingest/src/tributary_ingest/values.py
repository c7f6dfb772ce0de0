"""Small parsing helpers shared by the connectors: JSON pointers, scalar values and timestamps from text."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from tributary_common.timeutil import parse_time

from .sdk import SampleValue

_MISSING = object()
MAX_TIME_TEXT = 64


class PointerError(LookupError):
    pass


def validate_pointer(pointer: str) -> str:
    """RFC 6901: empty (the whole document) or `/`-separated tokens; `~` only as `~0` or `~1`."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    for token in pointer.split("/")[1:]:
        rest = token.replace("~0", "").replace("~1", "")
        if "~" in rest:
            raise ValueError(f"JSON pointer {pointer!r}: '~' must be followed by 0 or 1")
    return pointer


def resolve_pointer(doc: Any, pointer: str) -> Any:
    """The value at `pointer` in `doc`; `PointerError` naming the first token that is not there."""
    node = doc
    for raw in pointer.split("/")[1:] if pointer else []:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict):
            node = node.get(token, _MISSING)
        elif isinstance(node, list) and token.isdigit() and (token == "0" or not token.startswith("0")):
            node = node[int(token)] if int(token) < len(node) else _MISSING
        else:
            node = _MISSING
        if node is _MISSING:
            raise PointerError(f"nothing at {pointer!r} (token {token!r})")
    return node


def as_sample_value(value: Any, where: str) -> SampleValue:
    """A JSON value as a sample value; objects, arrays and non-finite numbers are refused with `where` named."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value} is not a finite number")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise ValueError(f"{where}: expected a number, string, bool or null, got a JSON {type(value).__name__}")


def parse_text_value(text: str) -> SampleValue:
    """A CSV cell or a plain MQTT payload: int, float, true/false, empty as null, anything else as a string."""
    s = text.strip()
    if s == "":
        return None
    try:
        return int(s)
    except ValueError:
        pass
    try:
        f = float(s)
    except ValueError:
        pass
    else:
        if math.isfinite(f):
            return f
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    return s


def parse_timestamp(value: Any) -> datetime:
    """RFC 3339 text with an offset, or a Unix time in seconds (int or float, or such text).

    Raises only `ValueError` (connectors skip the row on it): `1e20`, `inf` or a huge integer overflow the platform's
    time_t, and an exception other than ValueError would end the read and restart it at the same row forever.
    """
    if isinstance(value, bool):
        raise ValueError(f"timestamp {value!r} is neither RFC 3339 text nor Unix seconds")
    if isinstance(value, int | float):
        return _from_unix(value)
    if isinstance(value, str):
        s = value.strip()
        if len(s) > MAX_TIME_TEXT:
            raise ValueError(f"timestamp of {len(s)} characters is longer than any time")
        try:
            seconds = float(s)
        except ValueError:
            try:
                return parse_time(s)
            except OverflowError:  # 9999-12-31T23:00:00-05:00 is past year 9999 in UTC
                raise ValueError(f"timestamp {s!r} is outside the years 1-9999 in UTC") from None
        return _from_unix(seconds)
    raise ValueError(f"timestamp {str(value)[:64]!r} is neither RFC 3339 text nor Unix seconds")


def _from_unix(seconds: float) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"Unix time {str(seconds)[:32]} is not a time in the years 1-9999") from None

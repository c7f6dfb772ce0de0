"""Opaque cursors: the last position of a page, base64url of its JSON."""

from __future__ import annotations

import base64
import binascii

import orjson

from .errors import Invalid


def encode(*position: str) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(position))).decode().rstrip("=")


def decode(cursor: str, size: int = 2) -> tuple[str, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise Invalid(
            "cursor is not one this API returned", [{"loc": "/cursor", "msg": "undecodable"}], code="invalid_cursor"
        ) from exc
    if not isinstance(value, list) or len(value) != size or not all(isinstance(v, str) for v in value):
        raise Invalid(
            "cursor is not one this API returned",
            [{"loc": "/cursor", "msg": "unexpected shape"}],
            code="invalid_cursor",
        )
    return tuple(value)

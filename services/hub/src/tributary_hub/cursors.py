"""Cursors: the last position of a page, each part base64url (unpadded) of its UTF-8, parts joined by `.`.

The format is declared in the API (`PATTERN`), and every string of that format is a position: one this API did
not return just starts the page after the position it spells (undecodable bytes read as U+FFFD). So a client
gets exactly what the document promises, and anything else is a 422 `invalid_cursor`.
"""

from __future__ import annotations

import base64
import re

from .errors import Invalid

# Base64url without padding never leaves 1 character over a multiple of 4.
PART = r"(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?"
MAX_LENGTH = 4096


def pattern(size: int) -> str:
    return rf"^{PART}(?:\.{PART}){{{size - 1}}}$"


def _b64(part: str) -> str:
    return base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")


def encode(*position: str) -> str:
    return ".".join(_b64(p) for p in position)


def decode(cursor: str, size: int = 2) -> tuple[str, ...]:
    if len(cursor) > MAX_LENGTH or not re.fullmatch(pattern(size), cursor):
        raise Invalid(
            "cursor is not one this API returned",
            [{"loc": "/cursor", "msg": f"expected {size} base64url parts joined by '.'"}],
            code="invalid_cursor",
        )
    return tuple(
        base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)).decode("utf-8", "replace") for p in cursor.split(".")
    )

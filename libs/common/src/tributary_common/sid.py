"""The identity of a subscription: a hash of the canonical JSON of `{source, params}`."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

SID_LENGTH = 26


def canonical_json(value: Any) -> bytes:
    """Keys sorted, no insignificant whitespace, UTF-8: the same bytes for the same value everywhere."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def compute_sid(source: str, params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON, base32 (lowercase, no padding), 26 characters.

    The canonical JSON keeps the order of characters inside values, so anagram parameters
    (`TI101.PV` and `TI110.PV`) get different sids.
    """
    digest = hashlib.sha256(canonical_json({"params": params, "source": source})).digest()
    return base64.b32encode(digest).decode().rstrip("=").lower()[:SID_LENGTH]

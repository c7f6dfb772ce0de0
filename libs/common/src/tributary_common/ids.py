"""Event ids: time-ordered UUIDv7 unless the client gives its own."""

from __future__ import annotations

import uuid_utils


def new_event_id() -> str:
    return str(uuid_utils.uuid7())

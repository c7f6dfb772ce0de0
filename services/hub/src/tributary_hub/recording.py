"""What every recorder shares about turning a message into documents: the converter's type, and the refusal
of a message that can never be written (dead-lettered with its reason)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import ValidationError

from tributary_common import deadletters
from tributary_common.amqp.delivery import Delivery

from .errors import dotted

ToDocs = Callable[[Delivery], Awaitable[list[dict[str, Any]]]]


class Unrecordable(Exception):
    """A message that can never be written; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def refusal(exc: ValidationError, what: str) -> Unrecordable:
    """`undecodable` (not JSON) or `not_a_<what>`, with the first problem but not the input (it may be huge)."""
    first = exc.errors()[0]
    reason = deadletters.UNDECODABLE if first["type"] in ("json_invalid", "json_type") else f"not_a_{what}"
    return Unrecordable(reason, dotted(exc, 1)[0])

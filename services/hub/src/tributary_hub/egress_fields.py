"""Unitop items checked against the egress policy at creation, where the hub can know.

A source's subscription schema marks the fields that say where its connector connects (`x-tributary-egress`:
`url` or `host`); the hub judges their values with the same policy ingest enforces. A literal address is judged
as it is; a name is resolved (briefly, concurrently) and judged by its addresses. A name that does not resolve
now, or a value that is a secret reference, is left to ingest, which checks every connection anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from tributary_common.egress import (
    SCHEMA_MARK,
    SCHEME_MARK,
    EgressPolicy,
    EgressRefused,
    IPAddress,
    Target,
    target_from_url,
)
from tributary_common.resolve import resolve

from .schemas import pointer

RESOLVE_TIMEOUT_S = 2.0
KINDS = ("url", "host")


@dataclass(frozen=True)
class Mark:
    kind: str  # "url" | "host"
    scheme: str | None = None  # of a host field (e.g. "mqtt"), for URL-prefix entries


def marked_fields(schema: Any) -> dict[str, Mark]:
    """The top-level properties a source's schema marks, with what they hold."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict):
        return {}
    out: dict[str, Mark] = {}
    for name, prop in props.items():
        if isinstance(prop, dict) and prop.get(SCHEMA_MARK) in KINDS:
            scheme = prop.get(SCHEME_MARK)
            out[name] = Mark(prop[SCHEMA_MARK], scheme if isinstance(scheme, str) else None)
    return out


class EgressCheck:
    """One check of a unitop's items: each name is resolved once however many items name it."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._lookups: dict[str, asyncio.Task[list[IPAddress]]] = {}

    async def problems(self, params: dict[str, Any], marks: dict[str, Mark], loc: str) -> list[dict[str, str]]:
        """Problems (`loc` is the JSON pointer of the params) with the marked fields of one item."""
        fields = [(f, mark, params[f]) for f, mark in marks.items() if isinstance(params.get(f), str)]
        verdicts = await asyncio.gather(*(self._refusal(value, mark) for _, mark, value in fields))
        return [
            {"loc": f"{loc}{pointer([f])}", "msg": why}
            for (f, _, _), why in zip(fields, verdicts, strict=True)
            if why is not None
        ]

    async def _refusal(self, value: str, mark: Mark) -> str | None:
        try:
            target = target_from_url(value) if mark.kind == "url" else Target(value, mark.scheme)
        except EgressRefused:
            return None  # not a URL: the schema check has said so
        if self.policy.allows_by_name(target):
            return None
        try:
            lookup = self._lookups.get(target.host)
            if lookup is None:
                lookup = self._lookups[target.host] = asyncio.ensure_future(
                    resolve(target.host, None, timeout_s=RESOLVE_TIMEOUT_S)
                )
            addresses = await asyncio.shield(lookup)
        except (OSError, TimeoutError, UnicodeError, ValueError):
            return None  # not knowable now; ingest refuses it at connect time if it must
        return self.policy.refusal(target, addresses)

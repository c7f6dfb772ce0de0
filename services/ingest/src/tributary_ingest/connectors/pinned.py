"""The egress check of a connector that opens its own sockets: resolve once, judge every address, connect to one."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from tributary_common.egress import SCHEMA_MARK, SCHEME_MARK, EgressPolicy, EgressRefused, Target
from tributary_common.resolve import resolve

from ..sdk import Refused


async def pinned_address(
    policy: EgressPolicy, host: str, scheme: str, port: int, path: str | None = None, *, timeout_s: float = 10.0
) -> str:
    """A checked address of `host` to connect to (no second resolution between check and connect); `Refused`
    when `TRIBUTARY_HTTP_ALLOW` does not allow it, `OSError`/`TimeoutError` when it does not resolve."""
    addresses = await resolve(host, port, timeout_s=timeout_s)
    try:
        policy.check(Target(host, scheme, port, path), addresses)
    except EgressRefused as exc:
        raise Refused(str(exc)) from None
    return str(addresses[0])


def netloc(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def host_field(scheme: str, description: str) -> Any:
    """The `host` field of a connector that connects with `pinned_address`: marked for the hub's egress check."""
    return Field(
        min_length=1,
        max_length=253,
        description=description,
        json_schema_extra={SCHEMA_MARK: "host", SCHEME_MARK: scheme},
    )

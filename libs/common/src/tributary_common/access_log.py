"""Access logs: one JSON line per HTTP request with its request id, principal, client address, status and
duration, written by a pure ASGI middleware (no extra await, no body buffering: it sits on the publish hot path).

The request id is the caller's `X-Request-ID` when it is a sane token (1-128 characters of letters, digits and
`._:-`), else a new one; it is returned in the response's `X-Request-ID`. The client address is the peer's,
unless the peer is a trusted proxy (`TRIBUTARY_TRUSTED_PROXIES`, CIDRs): then the right-most address of
`X-Forwarded-For` that is not itself a trusted proxy. A forwarded address from anyone else is ignored, so no
client can pose as another address. Successful requests may be sampled (`TRIBUTARY_ACCESS_LOG_SAMPLE`); 4xx and
5xx are always logged. The route's authentication puts the principal's subject in `request.state.principal`.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("tributary.access")

REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
MAX_FORWARDED_HOPS = 16
MAX_FORWARDED_CHARS = 1024
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def list_setting(raw: object) -> list[str]:
    """A list setting given as a JSON list or comma-separated. Text that starts as other JSON would (an object, a
    quoted string) is read as JSON too, and refused as not a list, rather than kept as one literal entry."""
    if isinstance(raw, str):
        text = raw.strip()
        raw = json.loads(text) if text[:1] in ("[", "{", '"') else text.split(",")  # bad JSON: a ValueError
    if not isinstance(raw, list | tuple) or not all(isinstance(e, str) for e in raw):
        raise ValueError("expected a list of strings")
    return [e.strip() for e in raw if e.strip()]


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    """CIDRs (or single addresses); ValueError naming the bad one."""
    networks = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an address or CIDR: {value[:64]!r}") from exc
    return tuple(networks)


def _verdict(address: str, proxies: tuple[Network, ...]) -> bool | None:
    """True: a trusted proxy; False: another address; None: not an address."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    return any(ip in net for net in proxies)


Verdict = Callable[[str], "bool | None"]


def verdicts(proxies: tuple[Network, ...]) -> Verdict:
    """`_verdict` remembered per address (parsing an address costs more than the rest of a log line)."""

    @functools.lru_cache(maxsize=4096)
    def verdict(address: str) -> bool | None:
        return _verdict(address, proxies)

    return verdict


def client_address(peer: str | None, forwarded: str | None, proxies: tuple[Network, ...] | Verdict) -> str | None:
    """The peer, or (from a trusted proxy) the right-most untrusted hop of X-Forwarded-For."""
    if not proxies or peer is None or forwarded is None:
        return peer
    verdict = proxies if callable(proxies) else verdicts(proxies)
    if verdict(peer) is not True:
        return peer
    hops = [h.strip() for h in forwarded[:MAX_FORWARDED_CHARS].split(",")][-MAX_FORWARDED_HOPS:]
    for hop in reversed(hops):
        trusted = verdict(hop)
        if trusted is None:
            return peer  # a hop that is not an address: the chain cannot be trusted beyond the peer
        if not trusted:
            return hop
    return hops[0]


def new_request_id() -> str:
    return os.urandom(8).hex()


class AccessLog:
    """ASGI middleware: the request id in and out, one log line per HTTP request."""

    def __init__(self, app: ASGIApp, *, trusted_proxies: tuple[Network, ...] = (), sample: float = 1.0) -> None:
        self.app = app
        self.proxies: Verdict | None = verdicts(trusted_proxies) if trusted_proxies else None
        self.sample = sample

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = forwarded = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value
            elif name == b"x-forwarded-for":
                forwarded = value
        request_id = given.decode("latin-1") if given is not None else ""
        if not REQUEST_ID_RE.fullmatch(request_id):
            request_id = new_request_id()
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        header = (b"x-request-id", request_id.encode())
        status = 500  # what the caller gets if the app fails before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logged = status >= 400 or self.sample >= 1.0 or (self.sample > 0 and random.random() < self.sample)
            if logged and log.isEnabledFor(logging.INFO):  # the line's fields cost as much as writing it
                peer = scope.get("client")
                client = peer[0] if peer else None
                if self.proxies is not None and forwarded is not None:
                    client = client_address(client, forwarded.decode("latin-1"), self.proxies)
                log.info(
                    "%s %s %d",
                    scope["method"],
                    scope["path"],
                    status,
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": scope["method"],
                            "path": scope["path"][:512],
                            "status": status,
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                            "principal": state.get("principal"),
                            "client": client,
                        }
                    },
                )

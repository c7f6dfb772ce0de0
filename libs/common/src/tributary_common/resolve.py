"""Name resolution for egress checks: every address a host name resolves to, once, so that the caller can check
them and then connect to a checked one (never resolving again between the check and the connection)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from .egress import IPAddress, literal_ip

MAX_ADDRESSES = 32


async def resolve(host: str, port: int | None = None, *, timeout_s: float = 5.0) -> list[IPAddress]:
    """The addresses of `host` (a literal address is its own), in the resolver's order, without duplicates.

    Raises `OSError` when the name does not resolve and `TimeoutError` when the resolver does not answer in time.
    """
    ip = literal_ip(host)
    if ip is not None:
        return [ip]
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout_s):
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    out: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out[:MAX_ADDRESSES]

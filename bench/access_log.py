"""The access log's cost per request, in-process: a trivial ASGI app called directly, bare and behind the
`AccessLog` middleware (JSON line to a file through the service's formatter, as in production; and sampled at 0).
Prints microseconds per request for each; compare with the hub's publish latency (bench/hub_publish.py)."""

from __future__ import annotations

import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tributary_common.access_log import AccessLog, parse_networks
from tributary_common.logs import JsonFormatter

N = 20_000


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 202, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: Any) -> None:
    pass


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/topics/sensor-reading/events",
        "headers": [(b"authorization", b"Bearer x"), (b"x-forwarded-for", b"203.0.113.9, 10.0.0.2")],
        "client": ("10.0.0.1", 51000),
    }


async def per_request_us(handler: Any) -> float:
    for _ in range(1000):
        await handler(scope(), receive, send)
    started = time.perf_counter()
    for _ in range(N):
        await handler(scope(), receive, send)
    return (time.perf_counter() - started) / N * 1e6


async def main() -> None:
    out = Path(tempfile.mkdtemp()) / "access.log"
    handler = logging.FileHandler(out)
    handler.setFormatter(JsonFormatter("bench"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    proxies = parse_networks(["10.0.0.0/8"])
    bare = await per_request_us(app)
    logged = await per_request_us(AccessLog(app, trusted_proxies=proxies))
    sampled = await per_request_us(AccessLog(app, trusted_proxies=proxies, sample=0.0))
    print(f"per request: bare app {bare:.1f} us, access log {logged:.1f} us, sampled to 0 {sampled:.1f} us")
    print(f"access log cost: {logged - bare:.1f} us per request ({sampled - bare:.1f} us with sample=0)")


if __name__ == "__main__":
    asyncio.run(main())

"""An httpx transport that reaches only what the egress policy allows, at the address it checked.

Every request (each redirect hop is one) is checked before it is sent: the URL's host is resolved once, the
policy judges the URL and every address, and the connection pool may then connect only to those addresses (a
network backend that never resolves names itself), so a DNS answer cannot change between check and connect.
TLS still verifies the certificate against the host name (httpcore sends it as SNI) and the Host header is the
URL's. When a host's addresses change, pooled connections to the old ones are dropped.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Iterable

import httpcore
import httpx

from tributary_common.egress import EgressPolicy, EgressRefused, IPAddress, Target
from tributary_common.resolve import resolve

SCHEMES = {"http": 80, "https": 443}


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Connects a (host, port) only to the addresses the transport checked for it."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()
        self.pins: dict[tuple[str, int], list[IPAddress]] = {}

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = self.pins.get((host, port))
        if not addresses:
            raise EgressRefused(f"{host}:{port} was not checked before connecting")
        error: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are not reachable")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _Body(httpx.AsyncByteStream):
    def __init__(self, stream: typing.AsyncIterable[bytes]) -> None:
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        close = getattr(self._stream, "aclose", None)
        if close is not None:
            await close()


class CheckedTransport(httpx.AsyncBaseTransport):
    def __init__(self, policy: EgressPolicy, *, resolve_timeout_s: float) -> None:
        self._policy = policy
        self._resolve_timeout_s = resolve_timeout_s
        self._backend = _PinnedBackend()
        self._pool = self._new_pool()

    def _new_pool(self) -> httpcore.AsyncConnectionPool:
        return httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=4,
            keepalive_expiry=30.0,
            network_backend=self._backend,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in SCHEMES:
            raise EgressRefused(f"{url.scheme}:// URLs are not reachable (http and https only)")
        host = url.raw_host.decode("ascii")
        port = url.port or SCHEMES[url.scheme]
        path = url.raw_path.decode("ascii").split("?", 1)[0] or "/"
        try:
            addresses = await resolve(host, port, timeout_s=self._resolve_timeout_s)
        except (OSError, TimeoutError) as exc:
            raise httpx.ConnectError(f"{host} does not resolve: {exc or type(exc).__name__}", request=request) from None
        self._policy.check(Target(host, url.scheme, port, path), addresses)
        key = (host, port)
        if self._backend.pins.get(key) not in (None, addresses):
            await self._pool.aclose()  # the name moved: no reuse of a connection to an address checked before
            self._pool = self._new_pool()
        self._backend.pins[key] = addresses
        assert isinstance(request.stream, typing.AsyncIterable)
        response = await self._pool.handle_async_request(
            httpcore.Request(
                method=request.method,
                url=httpcore.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
                headers=request.headers.raw,
                content=request.stream,
                extensions=request.extensions,
            )
        )
        assert isinstance(response.stream, typing.AsyncIterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

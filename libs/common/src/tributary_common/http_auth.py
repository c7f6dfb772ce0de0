"""FastAPI dependencies for bearer authentication, shared by the hub and the stream service."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import Request

from .auth import ANONYMOUS_ADMIN, AuthError, JwtVerifier, Principal

# Extra verifier for non-JWT credentials (the hub's API keys): returns None when the token is not one.
KeyVerifier = Callable[[str], Awaitable[Principal | None]]


class Authenticator:
    def __init__(self, jwt: JwtVerifier, *, enabled: bool = True, api_keys: KeyVerifier | None = None) -> None:
        self.jwt = jwt
        self.enabled = enabled
        self.api_keys = api_keys

    async def authenticate(self, token: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_ADMIN
        if not token:
            raise AuthError("missing bearer token")
        if self.api_keys is not None and token.count(".") != 2:
            principal = await self.api_keys(token)
            if principal is None:
                raise AuthError("invalid API key")
            # A verdict cached (here or in the hub) before the key expired must not outlive the expiry.
            if principal.expires_at is not None and principal.expires_at <= time.time():
                raise AuthError("API key expired")
            return principal
        return await self.jwt.verify(token)


def bearer_token(request: Request, allow_query: bool = False) -> str | None:
    """The token from `Authorization: Bearer …` (or `?access_token=` where browsers cannot set headers)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if allow_query:
        return request.query_params.get("access_token") or None
    return None

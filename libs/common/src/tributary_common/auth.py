"""Bearer JWT verification and authorization rules shared by the hub and the stream service.

Claims: `sub`, `scope` (OAuth 2.0, space-separated), and optional ACL patterns: `topics` (AMQP patterns over
routing keys `<topic>.<subject>`, the same matcher as bindings and history) and `unitops` (name globs such as
`pump-*`). A missing ACL claim means no restriction beyond the scopes; `admin` grants everything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import jwt

from .matcher import matches, pattern_covers, topic_may_match
from .names import NameError_, validate_pattern

SCOPES = (
    "topics:read",
    "topics:write",
    "events:publish",
    "events:read",
    "unitops:read",
    "unitops:write",
    "admin",
)


class AuthError(Exception):
    """401: no credentials, or credentials that do not verify."""


class Forbidden(Exception):
    """403: valid credentials without the right."""


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    topics: tuple[str, ...] | None = None  # None: all
    unitops: tuple[str, ...] | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    def has_scope(self, scope: str) -> bool:
        return self.is_admin or scope in self.scopes

    def require(self, scope: str) -> None:
        if not self.has_scope(scope):
            raise Forbidden(f"missing scope {scope!r}")

    def may_key(self, key: str) -> bool:
        """May act on the routing key `key` (publish to it, read an event of it)."""
        return self.is_admin or self.topics is None or any(matches(p, key) for p in self.topics)

    def may_pattern(self, pattern: str) -> bool:
        """May subscribe to or query `pattern`: every key it can match must be allowed."""
        return self.is_admin or self.topics is None or any(pattern_covers(p, pattern) for p in self.topics)

    def may_topic(self, topic: str) -> bool:
        """May see the topic at all (some of its keys are allowed)."""
        return self.is_admin or self.topics is None or any(topic_may_match(p, topic) for p in self.topics)

    def may_unitop(self, name: str) -> bool:
        return self.is_admin or self.unitops is None or any(fnmatchcase(name, p) for p in self.unitops)


ANONYMOUS_ADMIN = Principal(subject="anonymous", scopes=frozenset({"admin"}))


class JwtVerifier:
    """HS256 with a shared secret in development; RS256/ES256 with keys from a JWKS URL in production."""

    def __init__(
        self,
        *,
        secret: str | None,
        algorithms: list[str],
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30,
    ) -> None:
        self._secret = secret
        self._algorithms = algorithms
        self._jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300) if jwks_url else None
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s

    def verify(self, token: str) -> Principal:
        try:
            if self._jwks is not None:
                key: Any = self._jwks.get_signing_key_from_jwt(token).key
            else:
                key = self._secret
            claims = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        return principal_from_claims(claims)


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise AuthError("invalid token: 'scope' must be a space-separated string")
    return Principal(
        subject=str(claims.get("sub", "")),
        scopes=frozenset(scope.split()),
        topics=_patterns(claims, "topics"),
        unitops=_patterns(claims, "unitops"),
        claims=claims,
    )


def _patterns(claims: dict[str, Any], name: str) -> tuple[str, ...] | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthError(f"invalid token: {name!r} must be a list of patterns")
    if name == "topics":
        # The same rules (and wildcard cap) as every pattern that enters: an ACL is matched on every request.
        for pattern in value:
            try:
                validate_pattern(pattern)
            except NameError_ as exc:
                raise AuthError(f"invalid token: 'topics' {exc}") from exc
    return tuple(value)


def mint_token(
    secret: str,
    *,
    subject: str = "dev",
    scopes: list[str] | tuple[str, ...] = SCOPES,
    topics: list[str] | None = None,
    unitops: list[str] | None = None,
    ttl_s: int = 24 * 3600,
    algorithm: str = "HS256",
) -> str:
    """A development token (HS256 with the shared secret)."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": subject, "scope": " ".join(scopes), "iat": now, "exp": now + ttl_s}
    if topics is not None:
        claims["topics"] = topics
    if unitops is not None:
        claims["unitops"] = unitops
    return jwt.encode(claims, secret, algorithm=algorithm)

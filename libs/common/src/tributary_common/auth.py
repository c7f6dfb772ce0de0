"""Bearer JWT verification and authorization rules shared by the hub and the stream service.

Claims: `sub`, `scope` (OAuth 2.0, space-separated), and optional ACL patterns: `topics` (AMQP patterns over
routing keys `<topic>.<subject>`, the same matcher as bindings and history) and `unitops` (name globs such as
`pump-*`). A missing ACL claim means no restriction beyond the scopes; `admin` grants everything. What identity
providers send instead (`scp`, `roles`, `groups`) is mapped by `TRIBUTARY_CLAIM_MAP` (see `claims`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Self

import jwt

from .auth_errors import AuthError, AuthUnavailable, Forbidden
from .claims import SCOPES as CLAIM_SCOPES
from .claims import UNITOP_GLOB_RE, UNITOP_GLOB_RULE, ClaimError, ClaimMap, grants
from .jwks import JWKS_MIN_REFRESH_S, JWKS_TIMEOUT_S, JwksKeys
from .matcher import matches, pattern_covers, topic_may_match
from .names import InvalidName, validate_pattern

if TYPE_CHECKING:
    from .settings import CommonSettings

# Re-exported: the scope names and the errors are part of this module's interface.
SCOPES = CLAIM_SCOPES
__all__ = ["SCOPES", "AuthError", "AuthUnavailable", "Forbidden", "JwtVerifier", "Principal", "principal_from_claims"]


@dataclass(frozen=True)
class Principal:
    subject: str
    scopes: frozenset[str]
    topics: tuple[str, ...] | None = None  # None: all
    unitops: tuple[str, ...] | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False)
    kind: str = "token"  # or "api_key"

    @property
    def expires_at(self) -> float | None:
        """When the credentials stop working (epoch seconds), None if never."""
        exp = self.claims.get("exp")
        return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None

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


# The last instant a token may name in `exp`: 9999-12-31T23:59:59Z (later cannot be shown as a time: /whoami, the
# stream's end of a token's streams).
MAX_EXP = 253402300799
# Patterns of a token's own `topics` / `unitops` claim, as many as an API key's or a claim-map grant's: a request
# matches its names against each of them (a batch of 10,000 events: a million matches at this bound).
MAX_ACL_PATTERNS = 100


class JwtVerifier:
    """HS256 with a shared secret in development; RS256/ES256 with keys from a JWKS URL in production."""

    def __init__(
        self,
        *,
        secret: str | None,
        algorithms: list[str],
        jwks_url: str | None = None,
        issuer: str | None = None,
        audience: str | list[str] | None = None,  # a token must carry one of them
        leeway_s: float = 30,
        jwks_timeout_s: float = JWKS_TIMEOUT_S,
        jwks_min_refresh_s: float = JWKS_MIN_REFRESH_S,
        claim_map: ClaimMap | None = None,
    ) -> None:
        self._secret = secret
        self._claim_map = claim_map
        self._algorithms = algorithms
        self._jwks = (
            JwksKeys(jwks_url, timeout_s=jwks_timeout_s, min_refresh_s=jwks_min_refresh_s) if jwks_url else None
        )
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s

    @classmethod
    def from_settings(cls, s: CommonSettings) -> Self:
        """The verifier a service's settings describe (the hub and the stream verify alike)."""
        return cls(
            secret=s.jwt_key(),
            algorithms=s.jwt_algorithms,
            jwks_url=s.jwks_url,
            issuer=s.jwt_issuer,
            # No audience: refused at start beside a JWKS URL unless waived (check_auth_safety).
            audience=s.jwt_audience or None,
            claim_map=s.claim_map,
        )

    async def verify(self, token: str) -> Principal:
        """The token's principal; AuthError (401) when it does not verify, AuthUnavailable (503) when the keys
        to check it cannot be fetched. Async: a JWKS fetch must never block the event loop."""
        try:
            if self._jwks is not None:
                header = jwt.get_unverified_header(token)
                kid = header.get("kid")
                jwk = await self._jwks.key(kid if isinstance(kid, str) else None)
                # A key is for one algorithm where its JWK says which (RFC 8725, 3.1): an RSA key published for
                # RS256 does not also verify PS256 tokens because both are allowed.
                declared = self._jwks.declared_alg(jwk)
                alg = header.get("alg")
                if declared is not None and alg != declared:
                    raise AuthError(f"invalid token: its alg {str(alg)[:16]!r} is not its key's ({declared[:16]})")
                key: Any = jwk.key
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
        except (jwt.InvalidKeyError, TypeError, ValueError) as exc:
            # PyJWT raises these preparing a key for an (allowed) alg that cannot use it: a JWKS RSA key for ES256,
            # HS256 or EdDSA, the shared secret for ES256 (TypeError, ValueError: a 500). The header is anyone's to
            # write, so this is the token's fault; it was parsed before the key was prepared.
            alg = jwt.get_unverified_header(token).get("alg")
            raise AuthError(f"invalid token: its alg {alg!r} does not fit the key that verifies it") from exc
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {exc}") from exc
        # PyJWT takes any `exp` int() takes ("1700000000", 1e300); the principal's expiry (/whoami, the stream ending
        # a token's streams) is a number of seconds that a time can hold, or the token is refused.
        exp = claims["exp"]
        if isinstance(exp, bool) or not isinstance(exp, int | float) or not 0 < exp <= MAX_EXP:
            raise AuthError("invalid token: 'exp' must be a number of seconds since 1970, before the year 10000")
        return principal_from_claims(claims, self._claim_map)


def principal_from_claims(claims: dict[str, Any], claim_map: ClaimMap | None = None, kind: str = "token") -> Principal:
    """The principal of verified claims: scopes and ACLs from `scope`/`scp`, `topics`/`unitops` and what
    `claim_map` grants (an API key's claims are its own: no map)."""
    try:
        strict = kind != "api_key"
        topics_claim, unitops_claim = _patterns(claims, "topics"), _patterns(claims, "unitops", strict)
        scopes, topics, unitops = grants(claims, claim_map, topics_claim, unitops_claim)
    except ClaimError as exc:
        raise AuthError(f"invalid token: {exc}") from exc
    return Principal(
        subject=str(claims.get("sub", ""))[:256],
        scopes=scopes,
        topics=None if topics is None else tuple(topics),
        unitops=None if unitops is None else tuple(unitops),
        claims=claims,
        kind=kind,
    )


def _patterns(claims: dict[str, Any], name: str, strict: bool = True) -> list[str] | None:
    """The ACL claim `name`, validated (`strict`: unitop globs too; an API key's were stored unchecked)."""
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise AuthError(f"invalid token: {name!r} must be a list of patterns")
    if len(value) > MAX_ACL_PATTERNS:
        raise AuthError(f"invalid token: {name!r} has more than {MAX_ACL_PATTERNS} patterns")
    if name == "unitops" and strict:
        # The claim map's rule: globs a unitop name can match. Each distinct glob is compiled (and kept by fnmatch)
        # once, so a token of long made-up globs would cost CPU and memory on every request.
        for pattern in value:
            if not UNITOP_GLOB_RE.fullmatch(pattern):
                raise AuthError(f"invalid token: 'unitops' pattern {pattern[:64]!r}: {UNITOP_GLOB_RULE}")
    if name == "topics":
        # The same rules (and wildcard cap) as every pattern that enters: an ACL is matched on every request.
        for pattern in value:
            try:
                validate_pattern(pattern)
            except InvalidName as exc:
                raise AuthError(f"invalid token: 'topics' {exc}") from exc
    return list(value)


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

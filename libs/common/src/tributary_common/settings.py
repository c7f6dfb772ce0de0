"""Settings shared by every service: one class per service derives from `CommonSettings`."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Annotated, Any

from jwt.algorithms import get_default_algorithms
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .access_log import list_setting, parse_networks
from .amqp.connection import parse_urls
from .claims import ClaimMap
from .egress import EgressPolicy, parse_allow_list
from .mongo_options import ClientOptions, ReadPreferenceName

log = logging.getLogger(__name__)

# The public development secret: anyone can sign tokens with it, so only a process in dev mode accepts it.
DEFAULT_JWT_SECRET = "dev-secret-change-me-please-0123456789"


class InsecureSettings(ValueError):
    """A setting that is safe only for local development, used without `TRIBUTARY_DEV_MODE=true`."""


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class CommonSettings(BaseSettings):
    """Read from `TRIBUTARY_*` environment variables (and a `.env` file when present)."""

    model_config = SettingsConfigDict(
        env_prefix="TRIBUTARY_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    service_name: str = "tributary"
    instance_id: str = Field(default_factory=_default_instance_id)
    log_level: str = "INFO"
    log_json: bool = True

    # One URL, or a RabbitMQ cluster's nodes comma-separated: connections go to any node that answers and move to
    # the next when theirs is lost (amqp/connection.py).
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", max_length=8192)
    memcached_host: str = "127.0.0.1"
    memcached_port: int = 11211
    memcached_pool_size: int = 8
    # Prefix of every Memcached key, so that several deployments (or test runs) can share one server.
    cache_namespace: str = "trib"

    # Development: HS256 with a shared secret. Production: RS256/ES256 keys from an OIDC provider's JWKS.
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithms: list[str] = ["HS256"]
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    # The audiences (comma-separated or a JSON list) a token must carry one of. Required beside a JWKS URL: an
    # identity provider signs tokens for every application it serves. `jwt_any_audience` waives it, loudly.
    jwt_audience: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=32)
    jwt_any_audience: bool = False
    # API key verdicts remembered in-process this long, the same in hub and stream: a revoked key stops
    # working (and its open streams end) within it.
    api_key_cache_s: float = Field(default=5.0, ge=0, le=5.0)
    # Identity providers' claims (`scp`, `roles`, `groups`, ...) -> Tributary scopes and ACLs (JSON; see claims.py).
    claim_map: ClaimMap = Field(default_factory=ClaimMap)
    # When false, requests without a token act as an admin: only for local demos (needs dev_mode).
    auth_enabled: bool = True
    # Local development: accept the public default secret and disabled auth. Never in production.
    dev_mode: bool = False
    # Browser apps on other origins allowed to call this service (comma-separated, e.g.
    # `https://console.example.com`; `*` any origin). Empty: no CORS headers, same-origin only (cors.py).
    cors_origins: str = Field(default="", max_length=4096)

    # Demand heartbeats (ARCHITECTURE.md, the path of a sample): sent every interval; demand lapses after ttl
    # without one.
    demand_interval_s: float = 5.0
    demand_ttl_s: float = 15.0
    rpc_timeout_s: float = 10.0

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # /healthz, /readyz and /metrics on a port of their own, bound before any dependency is reached (Kubernetes
    # probes it; only Prometheus may reach it; the Ingress routes http_port). Unset: served on http_port.
    ops_port: int | None = Field(default=None, ge=1, le=65535)
    # Seconds to drain in-flight work on SIGTERM before the process exits.
    shutdown_grace_seconds: float = 20.0

    # Egress allow-list of the http and mqtt connectors (comma-separated or a JSON list of URL prefixes, hosts,
    # CIDRs): non-public addresses are refused unless an entry matches. The hub checks unitops with it too.
    http_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Access logs: the share of successful requests logged (errors always are); X-Forwarded-For is believed only
    # from these proxies (comma-separated or JSON list of CIDRs).
    access_log_sample: float = Field(default=1.0, ge=0, le=1)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list, max_length=256)

    @field_validator("jwt_algorithms")
    @classmethod
    def _jwt_algorithms(cls, v: list[str]) -> list[str]:
        known = set(get_default_algorithms()) - {"none"}
        unknown = [a for a in v if a not in known]
        if not v or unknown:
            raise ValueError(f"JWT algorithms must be some of {sorted(known)}; got {[a[:16] for a in unknown[:5]]}")
        return v

    @model_validator(mode="after")
    def _secret_algorithms(self) -> CommonSettings:
        # A shared secret verifies HMAC only: an RS256 or ES256 listed beside it could never verify a token, and told
        # of a misconfigured deployment only at the first request.
        if self.jwks_url is None and any(not a.startswith("HS") for a in self.jwt_algorithms):
            raise ValueError(
                "with a shared secret (no TRIBUTARY_JWKS_URL) TRIBUTARY_JWT_ALGORITHMS may hold HS256, "
                "HS384 and HS512 only"
            )
        return self

    @field_validator("jwt_audience", mode="before")
    @classmethod
    def _jwt_audience(cls, v: Any) -> Any:
        return [] if v is None else list_setting(v)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, v: Any) -> Any:
        values = list_setting(v)
        parse_networks(values)  # refuse a bad CIDR at start, naming it
        return values

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, v: str) -> str:
        parse_urls(v)  # refuse a malformed node at start, naming it (without its password)
        return v

    @field_validator("http_allow", mode="before")
    @classmethod
    def _http_allow(cls, v: Any) -> Any:
        return parse_allow_list(v)

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.http_allow)

    def jwt_key(self) -> str:
        """The HS256 secret, after refusing settings that let anyone in outside dev mode."""
        self._refuse_insecure()
        return self.jwt_secret.get_secret_value()

    def check_auth_safety(self) -> None:
        """At a service's start (once): refuse settings that let anyone in, or that accept tokens an identity
        provider issued for its other applications."""
        self._refuse_insecure()
        if self.dev_mode or self.jwks_url is None or self.jwt_audience:
            return
        # An identity provider signs tokens for every application it serves: without an audience, a token issued
        # for another of them (with claims the claim map turns into scopes) would be accepted here too.
        if not self.jwt_any_audience:
            raise InsecureSettings(
                "TRIBUTARY_JWKS_URL is set without TRIBUTARY_JWT_AUDIENCE: set the audience the identity provider "
                "puts in this platform's tokens (or TRIBUTARY_JWT_ANY_AUDIENCE=true to accept tokens issued for "
                "any of its applications)"
            )
        log.warning(
            "TRIBUTARY_JWT_ANY_AUDIENCE=true: tokens the identity provider issued for any application are accepted"
        )

    def _refuse_insecure(self) -> None:
        if self.dev_mode:
            return
        if not self.auth_enabled:
            raise InsecureSettings("TRIBUTARY_AUTH_ENABLED=false is allowed only with TRIBUTARY_DEV_MODE=true")
        if self.jwks_url is None and self.jwt_secret.get_secret_value() == DEFAULT_JWT_SECRET:
            raise InsecureSettings(
                "TRIBUTARY_JWT_SECRET is the public development default: set a random secret of 32+ characters "
                "(or TRIBUTARY_JWKS_URL), or TRIBUTARY_DEV_MODE=true on a development machine"
            )


class MongoSettings(BaseSettings):
    """Mixin for the service that owns MongoDB (the hub)."""

    model_config = SettingsConfigDict(
        env_prefix="TRIBUTARY_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    mongodb_url: str = "mongodb://127.0.0.1:27017/"
    mongodb_db: str = "tributary"
    # On a replica set (docs/scaling.md): `majority` or a number of members (1-50). Never 0: the recorder acks the
    # broker only after the database acknowledged the batch.
    mongodb_write_concern: str = Field(default="majority", max_length=8)
    mongodb_write_timeout_ms: int = Field(default=10_000, ge=0, le=600_000)
    # `primary` reads every acknowledged write (catch-up needs it); a secondary may lag behind.
    mongodb_read_preference: ReadPreferenceName = "primary"
    mongodb_retry_writes: bool = True
    # The replica set's name (also accepted in the URL as `replicaSet=`); unset for FerretDB or a standalone server.
    mongodb_replica_set: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

    @field_validator("mongodb_write_concern")
    @classmethod
    def _write_concern(cls, v: str) -> str:
        if v != "majority" and not (v.isdigit() and 1 <= int(v) <= 50):
            raise ValueError(f"write concern {v!r}: `majority` or a number of members from 1 to 50 (0 loses writes)")
        return v

    def mongodb_options(self) -> ClientOptions:
        w = self.mongodb_write_concern
        return ClientOptions(
            write_concern=int(w) if w.isdigit() else w,
            write_timeout_ms=self.mongodb_write_timeout_ms,
            read_preference=self.mongodb_read_preference,
            retry_writes=self.mongodb_retry_writes,
            replica_set=self.mongodb_replica_set,
        )

"""Settings shared by every service: one class per service derives from `CommonSettings`."""

from __future__ import annotations

import os
import socket
import uuid
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .egress import EgressPolicy, parse_allow_list


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class CommonSettings(BaseSettings):
    """Read from `TRIBUTARY_*` environment variables (and a `.env` file when present)."""

    model_config = SettingsConfigDict(env_prefix="TRIBUTARY_", env_file=".env", extra="ignore")

    service_name: str = "tributary"
    instance_id: str = Field(default_factory=_default_instance_id)
    log_level: str = "INFO"
    log_json: bool = True

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    memcached_host: str = "127.0.0.1"
    memcached_port: int = 11211
    memcached_pool_size: int = 8
    # Prefix of every Memcached key, so that several deployments (or test runs) can share one server.
    cache_namespace: str = "trib"

    # Development: HS256 with a shared secret. Production: RS256/ES256 keys from an OIDC provider's JWKS.
    jwt_secret: SecretStr = SecretStr("dev-secret-change-me-please-0123456789")
    jwt_algorithms: list[str] = ["HS256"]
    jwks_url: str | None = None
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # When false, requests without a token act as an admin: only for local demos.
    auth_enabled: bool = True

    # Demand heartbeats (SPEC flow 3): sent every interval; demand lapses after ttl without one.
    demand_interval_s: float = 5.0
    demand_ttl_s: float = 15.0
    rpc_timeout_s: float = 10.0

    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # Seconds to drain in-flight work on SIGTERM before the process exits.
    shutdown_grace_seconds: float = 20.0

    # Egress allow-list of the http and mqtt connectors (comma-separated or a JSON list of URL prefixes, hosts,
    # CIDRs): non-public addresses are refused unless an entry matches. The hub checks unitops with it too.
    http_allow: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("http_allow", mode="before")
    @classmethod
    def _http_allow(cls, v: Any) -> Any:
        return parse_allow_list(v)

    def egress_policy(self) -> EgressPolicy:
        return EgressPolicy.parse(self.http_allow)


class MongoSettings(BaseSettings):
    """Mixin for the service that owns MongoDB (the hub)."""

    model_config = SettingsConfigDict(env_prefix="TRIBUTARY_", env_file=".env", extra="ignore")

    mongodb_url: str = "mongodb://127.0.0.1:27017/"
    mongodb_db: str = "tributary"

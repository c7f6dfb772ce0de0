"""`IngestSettings`: every knob of the ingest service, from `TRIBUTARY_*` environment variables."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from tributary_common.settings import CommonSettings


class IngestSettings(CommonSettings):
    service_name: str = "tributary-ingest"
    http_port: int = 8002

    # Leases (Memcached): taken with `add` for lease_ttl_s, renewed with gets+cas every lease_renew_interval_s
    # (default a third of the TTL). A renewal that fails stops the read at once.
    lease_ttl_s: float = Field(default=15.0, ge=2.0)
    lease_renew_interval_s: float | None = Field(default=None, gt=0)
    # After demand for a sid lapses, the owner keeps reading this long before it lets go.
    release_grace_s: float = Field(default=10.0, ge=0)
    # How often demanded-but-unowned sids are tried (also what a takeover waits for after a lease expires).
    reconcile_interval_s: float = Field(default=1.0, gt=0)

    # A batch is published when it holds batch_max_size samples or its first sample is batch_max_delay_s old.
    batch_max_size: int = Field(default=500, ge=1, le=10000)
    batch_max_delay_s: float = Field(default=0.25, gt=0)
    # Samples buffered per sid while the broker is slow; more are dropped (counted).
    max_buffer_per_sid: int = Field(default=20000, ge=1)
    # A sample's time must lie in [now - max_sample_age_s, now + max_sample_skew_s]; others are refused (counted
    # in tributary_ingest_samples_dropped{reason}, logged at most once per 30 s per source and reason) before they
    # move the per-sid watermark. The age bound refuses unset device clocks (1970, year 1) and still lets a csv
    # backfill of the past years through; the skew bound keeps one far-future time from silencing a sid.
    max_sample_age_s: float = Field(default=10 * 365 * 86400.0, gt=0, le=200 * 365 * 86400.0)
    max_sample_skew_s: float = Field(default=300.0, ge=0, le=366 * 86400.0)
    publish_persistent: bool = True
    publish_timeout_s: float = Field(default=10.0, gt=0)

    # Comma-separated entry-point names (`simulator,csv`); empty means every registered source.
    enabled_sources: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Per-source capacity overrides as JSON (`{"simulator": 5000}`); otherwise the connector's own capacity.
    capacity: dict[str, int] = Field(default_factory=dict)

    # Jittered exponential backoff when a connector fails: each delay lies in [d/2, d], d = min*2^n capped at max.
    backoff_min_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)

    # Connector secrets referenced as {"secret": "NAME"}: the file NAME in this folder (a mounted Kubernetes
    # Secret), else the environment variable TRIBUTARY_SECRET_<NAME>.
    secrets_dir: Path | None = None

    # Source announcements on tributary.control, for the hub's catalogue of sources.
    announce_interval_s: float = Field(default=5.0, gt=0)

    # The http source: answers over this many bytes are refused (read streaming, never whole); polls no more often
    # than this (announced as the minimum of `interval_s`, so the hub refuses a shorter one with a 422).
    http_max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024, le=256 * 1024 * 1024)
    http_min_interval_s: float = Field(default=1.0, ge=0.05, le=3600)
    # Backfill: a read that starts from a watermark (a lease taken over, a reconnect) first reads the connector's
    # history from there, at most this far back (0: never), within this time.
    backfill_max_s: float = Field(default=86400.0, ge=0, le=366 * 86400.0)
    backfill_timeout_s: float = Field(default=300.0, gt=0, le=86400.0)
    # Browsing (GET /sources/{source}/browse, over RPC): one listing may take this long.
    browse_timeout_s: float = Field(default=10.0, gt=0, le=120.0)
    # The csv source reads only under these folders (a JSON list or os.pathsep-separated); unset: not served.
    csv_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # The mqtt source's `ca_file`/`client_certificate_file` are read only under this folder; unset: PEM params only.
    mqtt_tls_dir: Path | None = None

    @field_validator("enabled_sources", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        return v

    @field_validator("csv_roots", mode="before")
    @classmethod
    def _roots(cls, v: Any) -> Any:
        if isinstance(v, str):
            text = v.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(os.pathsep) if p.strip()]
        return v

    @field_validator("csv_roots")
    @classmethod
    def _absolute_roots(cls, v: list[Path]) -> list[Path]:
        relative = [str(p) for p in v if not p.is_absolute()]
        if relative:
            raise ValueError(f"TRIBUTARY_CSV_ROOTS must be absolute paths: {relative}")
        return v

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> IngestSettings:
        if self.lease_renew_interval_s is None:
            self.lease_renew_interval_s = self.lease_ttl_s / 3
        if self.lease_renew_interval_s >= self.lease_ttl_s / 2:
            raise ValueError("lease_renew_interval_s must be under half of lease_ttl_s, so a renewal lands in time")
        if self.backoff_max_s < self.backoff_min_s:
            raise ValueError("backoff_max_s must be >= backoff_min_s")
        return self

    @property
    def renew_interval_s(self) -> float:
        assert self.lease_renew_interval_s is not None
        return self.lease_renew_interval_s

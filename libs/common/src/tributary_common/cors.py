"""CORS for browser apps on other origins (`TRIBUTARY_CORS_ORIGINS`), the same on hub and stream."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

# What a browser client sends: a bearer token, JSON or CloudEvents bodies, an Accept for exports, binary-mode
# CloudEvents attributes. Exposed: what a client reads back (Retry-After on 429/503, downloads' file name).
ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "Accept",
    "Last-Event-ID",
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-subject",
]
EXPOSE_HEADERS = ["Retry-After", "Content-Disposition", "Location"]


def parse_origins(raw: str) -> list[str]:
    """`https://a.example, https://b.example` -> the list; each an origin (scheme://host[:port]) or `*`."""
    origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"TRIBUTARY_CORS_ORIGINS: {origin!r} is not an origin (scheme://host[:port]) nor *")
    return origins


def install_cors(app: FastAPI, raw_origins: str) -> None:
    """Nothing when no origin is configured. Credentials are bearer tokens (not cookies): no allow-credentials."""
    origins = parse_origins(raw_origins)
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        allow_headers=ALLOW_HEADERS,
        expose_headers=EXPOSE_HEADERS,
        max_age=600,
    )

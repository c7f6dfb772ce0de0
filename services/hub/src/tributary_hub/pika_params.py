"""pika's side of AMQP as the rest of the hub sees it through aio-pika: the parameters of a connection from an AMQP
URL, and message headers with aio-pika's types."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime
from typing import Any

import pika
from yarl import URL


def node_parameters(url: str, name: str) -> pika.ConnectionParameters:
    """pika's parameters for one AMQP URL as aio-pika reads it (vhost, `heartbeat`, TLS with `cafile`, `certfile`,
    `keyfile`), named `name` in the management UI."""
    parsed = URL(url)
    tls = parsed.scheme == "amqps"
    host = parsed.host or "localhost"
    vhost = "/" if parsed.path in ("", "/") else parsed.path[1:]
    options: dict[str, Any] = {}
    if "heartbeat" in parsed.query:
        options["heartbeat"] = int(parsed.query["heartbeat"])
    if tls:
        context = ssl.create_default_context(cafile=parsed.query.get("cafile"))
        if "certfile" in parsed.query:
            context.load_cert_chain(parsed.query["certfile"], parsed.query.get("keyfile"))
        options["ssl_options"] = pika.SSLOptions(context, host)
    return pika.ConnectionParameters(
        host=host,
        port=parsed.port or (5671 if tls else 5672),
        virtual_host=vhost,
        credentials=pika.PlainCredentials(parsed.user or "guest", parsed.password or "guest"),
        client_properties={"connection_name": name},
        connection_attempts=1,
        socket_timeout=5,
        stack_timeout=10,
        **options,
    )


def aware(value: Any) -> Any:
    """Header values as aio-pika gives them: pika decodes AMQP timestamps to naive UTC datetimes."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value
    if isinstance(value, dict):
        return {k: aware(v) for k, v in value.items()}
    if isinstance(value, list):
        return [aware(v) for v in value]
    return value


def headers_of(raw: dict[str, Any] | None) -> dict[str, Any]:
    """A message's headers as aio-pika gives them (an empty table for none)."""
    if not raw:
        return {}
    if any(isinstance(v, datetime | dict | list) for v in raw.values()):
        return {k: aware(v) for k, v in raw.items()}
    return raw

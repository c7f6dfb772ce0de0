"""Isolation on shared real services: each test session gets its own RabbitMQ vhost, MongoDB database and
Memcached namespace, so suites (and developers) can run side by side against one local platform."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pymongo

from tests.support.polling import wait_for as wait_for  # its old home, still imported from here

RABBIT_HOST = os.environ.get("TEST_RABBITMQ_HOST", "127.0.0.1")
RABBIT_PORT = int(os.environ.get("RABBITMQ_PORT", "5672"))
RABBIT_MGMT_PORT = int(os.environ.get("RABBITMQ_MGMT_PORT", "15672"))
MEMCACHED_PORT = int(os.environ.get("MEMCACHED_PORT", "11211"))
FERRETDB_PORT = int(os.environ.get("FERRETDB_PORT", "27017"))
MQTT_PORT = int(os.environ.get("MQTT_PORT", "1883"))
MGMT_AUTH = ("guest", "guest")


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def require_services() -> None:
    missing = [
        name
        for name, port in (
            ("rabbitmq", RABBIT_PORT),
            ("rabbitmq-management", RABBIT_MGMT_PORT),
            ("memcached", MEMCACHED_PORT),
            ("ferretdb", FERRETDB_PORT),
        )
        if not port_open(port)
    ]
    if missing:
        raise RuntimeError(f"services not running: {', '.join(missing)}; run `make services` first")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def mgmt_url(path: str) -> str:
    return f"http://{RABBIT_HOST}:{RABBIT_MGMT_PORT}/api{path}"


def create_vhost(name: str) -> str:
    """Create a vhost with full rights for guest; return its AMQP URL."""
    with httpx.Client(auth=MGMT_AUTH, timeout=10) as http:
        http.put(mgmt_url(f"/vhosts/{quote(name, safe='')}")).raise_for_status()
        http.put(
            mgmt_url(f"/permissions/{quote(name, safe='')}/guest"),
            json={"configure": ".*", "write": ".*", "read": ".*"},
        ).raise_for_status()
    return amqp_url(name)


def amqp_url(vhost: str, port: int | None = None) -> str:
    return f"amqp://guest:guest@{RABBIT_HOST}:{port or RABBIT_PORT}/{quote(vhost, safe='')}"


def delete_vhost(name: str) -> None:
    with httpx.Client(auth=MGMT_AUTH, timeout=10) as http:
        http.delete(mgmt_url(f"/vhosts/{quote(name, safe='')}"))


def queue_info(vhost: str, queue: str) -> dict[str, object] | None:
    with httpx.Client(auth=MGMT_AUTH, timeout=10) as http:
        r = http.get(mgmt_url(f"/queues/{quote(vhost, safe='')}/{quote(queue, safe='')}"))
        return None if r.status_code == 404 else dict(r.json())


def bindings(vhost: str, exchange: str) -> list[dict[str, object]]:
    with httpx.Client(auth=MGMT_AUTH, timeout=10) as http:
        r = http.get(mgmt_url(f"/exchanges/{quote(vhost, safe='')}/{quote(exchange, safe='')}/bindings/source"))
        r.raise_for_status()
        return list(r.json())


def mongodb_url(port: int | None = None) -> str:
    return f"mongodb://127.0.0.1:{port or FERRETDB_PORT}/"


# The local platform's own ports above 20000 (RabbitMQ's distribution port, FerretDB): never handed out.
PLATFORM_PORTS = {25672, 27017}
_handed_out: set[int] = set()
_pick = random.SystemRandom()  # tests that seed `random` must not make every process pick the same ports


def _outside_ephemeral() -> list[range]:
    """Ports the kernel never gives a client as its source port. A server restarted on one of them cannot find it
    taken by a connection, and a client retrying while it is down cannot connect to itself (TCP self-connect to
    a free ephemeral port, which then holds the port and answers the client with its own bytes)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return [r for r in (range(20000, low), range(high + 1, 65536)) if len(r)]


def free_port() -> int:
    """A port free now on 127.0.0.1, outside the ephemeral range, not handed out before in this process."""
    ranges = _outside_ephemeral()
    for _ in range(1000 if ranges else 0):
        port = _pick.choice(_pick.choice(ranges))
        if port in _handed_out or port in PLATFORM_PORTS:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as s:  # no such range here: whatever the kernel gives
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def isolated_env(prefix: str, jwt_secret: str) -> Iterator[dict[str, str]]:
    """The settings of a service process in a vhost, database and cache namespace of its own (for benches and
    tests that start real processes); the vhost and the database are removed afterwards."""
    vhost = unique(prefix)
    db = unique(prefix).replace("-", "_")
    try:
        yield {
            "TRIBUTARY_AMQP_URL": create_vhost(vhost),
            "TRIBUTARY_MONGODB_URL": mongodb_url(),
            "TRIBUTARY_MONGODB_DB": db,
            "TRIBUTARY_MEMCACHED_PORT": str(MEMCACHED_PORT),
            "TRIBUTARY_CACHE_NAMESPACE": unique(prefix),
            "TRIBUTARY_JWT_SECRET": jwt_secret,
        }
    finally:
        delete_vhost(vhost)
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(mongodb_url()) as client:
            client.drop_database(db)

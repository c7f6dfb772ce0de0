"""The whole platform as real processes: hub (API and recorders), one ingest instance, the stream service,
each exporting spans to an in-test OTLP receiver. One platform per test module, in its own vhost, database
and cache namespace."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pymongo
import pytest

from tests.support import platform
from tests.support.otlp import OtlpReceiver
from tests.support.processes import ServiceProcess
from tests.support.tokens import Minter

SECRET = "e2e-secret-0123456789-0123456789-abcdef"
MINT = Minter(SECRET)


@dataclass
class Platform:
    hub: ServiceProcess
    ingest: ServiceProcess
    stream: ServiceProcess
    otlp: OtlpReceiver
    env: dict[str, str]
    token: str

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub.port}"

    @property
    def stream_url(self) -> str:
        return f"ws://127.0.0.1:{self.stream.port}"

    @property
    def stream_http_url(self) -> str:
        return f"http://127.0.0.1:{self.stream.port}"


@pytest.fixture(scope="module")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    platform.require_services()
    vhost = platform.unique("e2e")
    amqp = platform.create_vhost(vhost)
    db = platform.unique("e2e").replace("-", "_")
    logs = Path(tmp_path_factory.mktemp("e2e-logs"))
    otlp = OtlpReceiver().start()
    common = {
        "TRIBUTARY_AMQP_URL": amqp,
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_CACHE_NAMESPACE": platform.unique("e2e"),
        "TRIBUTARY_JWT_SECRET": SECRET,
        "TRIBUTARY_DEMAND_INTERVAL_S": "1",
        "TRIBUTARY_DEMAND_TTL_S": "4",
    }
    ports = {name: platform.free_port() for name in ("hub", "ingest", "stream")}

    def make(name: str, module: str) -> ServiceProcess:
        env = {**common, **otlp.env(f"tributary-{name}"), "TRIBUTARY_HTTP_PORT": str(ports[name])}
        return ServiceProcess(module, ["serve"], env, logs / f"{name}.log", ports[name])

    procs = [make("hub", "tributary_hub"), make("ingest", "tributary_ingest"), make("stream", "tributary_stream")]
    try:
        for p in procs:
            p.start(wait=False)
        for p in procs:
            p.wait_healthy(60)
            p.wait_healthy(60, path="/readyz")
        hub, ingest, stream = procs
        yield Platform(hub, ingest, stream, otlp=otlp, env=common, token=MINT(subject="e2e"))
    finally:
        for p in reversed(procs):
            p.terminate()
        otlp.stop()
        platform.delete_vhost(vhost)
        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(platform.mongodb_url()) as client:
            client.drop_database(db)

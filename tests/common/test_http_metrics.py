"""HTTP request metrics: counted by route template and status, a hostile path never becomes a label."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from tributary_common.http_metrics import HttpMetrics


def _app(registry: CollectorRegistry) -> FastAPI:
    app = FastAPI()

    @app.get("/topics/{topic}")
    async def get_topic(topic: str) -> dict[str, str]:
        if topic == "boom":
            raise RuntimeError("a bug")
        return {"topic": topic}

    app.add_middleware(HttpMetrics, registry=registry)
    return app


def _count(registry: CollectorRegistry, method: str, route: str, status: str) -> float:
    value = registry.get_sample_value(
        "tributary_http_requests_total", {"method": method, "route": route, "status": status}
    )
    return value or 0.0


def test_requests_are_counted_by_route_template_and_status() -> None:
    registry = CollectorRegistry()
    client = TestClient(_app(registry), raise_server_exceptions=False)
    assert client.get("/topics/a").status_code == 200
    assert client.get("/topics/b").status_code == 200
    assert client.get("/topics/boom").status_code == 500
    assert _count(registry, "GET", "/topics/{topic}", "200") == 2
    assert _count(registry, "GET", "/topics/{topic}", "500") == 1
    latency = registry.get_sample_value(
        "tributary_http_request_duration_seconds_count", {"method": "GET", "route": "/topics/{topic}"}
    )
    assert latency == 3


def test_unmatched_paths_and_odd_methods_do_not_grow_the_labels() -> None:
    registry = CollectorRegistry()
    client = TestClient(_app(registry))
    for i in range(50):
        client.get(f"/nothing/{i}")
    client.request("BREW", "/topics/a")
    assert _count(registry, "GET", "other", "404") == 50
    assert _count(registry, "other", "/topics/{topic}", "405") == 1
    routes = {s.labels["route"] for m in registry.collect() for s in m.samples if m.name == "tributary_http_requests"}
    assert routes == {"other", "/topics/{topic}"}


def test_apps_sharing_a_registry_share_the_metrics() -> None:
    registry = CollectorRegistry()
    for _ in range(2):
        TestClient(_app(registry)).get("/topics/a")
    assert _count(registry, "GET", "/topics/{topic}", "200") == 2

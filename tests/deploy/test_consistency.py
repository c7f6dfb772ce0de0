"""The manifests and the services' code agree: every TRIBUTARY_* variable set in Kubernetes, compose or an image
is a field of that service's settings class and parses there; every OTEL_* variable is one the OpenTelemetry
SDK reads; ports and probe ports are the ones the settings make the service listen on; the commands are real
subcommands; the queues KEDA watches are the recorder's."""

from __future__ import annotations

import os
import re

import pytest
from pydantic import ValidationError

from tests.deploy.manifests import (
    COMPOSE_WORKLOADS,
    OVERLAYS,
    WORKLOADS,
    all_settings_env_names,
    cli_subcommands,
    compose,
    compose_env,
    container,
    container_env,
    deploy_text_files,
    deployments,
    env_names,
    image_service,
    interpolate,
    of_kind,
    otel_env_names,
    port_by_name,
    render,
    secret_refs,
    settings_class,
)

CASES = [(o, w) for o in OVERLAYS for w in WORKLOADS]
# Stand-ins for values the manifests take from the Secret or the downward API, to instantiate the settings.
PLACEHOLDERS = {
    "TRIBUTARY_AMQP_URL": "amqp://user:password@rabbitmq:5672/",
    "TRIBUTARY_MONGODB_URL": "mongodb://mongodb:27017/",
    "TRIBUTARY_JWT_SECRET": "a-secret-of-at-least-thirty-two-characters",
    "TRIBUTARY_INSTANCE_ID": "pod-0",
}


def _check_env(where: str, service: str, env: dict[str, str | None]) -> None:
    cls = settings_class(service)
    fields = env_names(cls)
    unknown = sorted(n for n in env if n.startswith("TRIBUTARY_") and n not in fields)
    assert not unknown, f"{where}: {unknown} are not fields of {cls.__module__}.{cls.__name__}"
    otel_known = otel_env_names()
    bad_otel = sorted(n for n in env if n.startswith("OTEL_") and n not in otel_known)
    assert not bad_otel, f"{where}: {bad_otel} are not variables the OpenTelemetry SDK reads"
    other = sorted(n for n in env if not n.startswith(("TRIBUTARY_", "OTEL_")))
    assert not other, f"{where}: {other} is read by nobody"
    # The values parse: the settings class is built from exactly this environment, as the service builds it.
    values = {k: (v if v is not None else PLACEHOLDERS[k]) for k, v in env.items() if k.startswith("TRIBUTARY_")}
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("TRIBUTARY_")]:
            del os.environ[key]
        os.environ.update(values)
        cls(_env_file=None)  # type: ignore[call-arg]
    except ValidationError as exc:
        pytest.fail(f"{where}: {cls.__name__} rejects the manifest's values: {exc}")
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_kubernetes_env_is_the_settings_class(overlay: str, name: str) -> None:
    d = deployments(overlay)[name]
    service, subcommand = WORKLOADS[name]
    c = container(d)
    assert image_service(c["image"]) == service, f"{name} runs {c['image']}, expected the {service} image"
    assert c.get("args") == [subcommand] and subcommand in cli_subcommands(service)
    assert "command" not in c, f"{name}: keep the image's ENTRYPOINT (the console script, PID 1)"
    _check_env(f"{overlay}/{name}", service, container_env(overlay, d))


# Workloads without a port of their own: everything they serve is on the ops port.
OPS_ONLY = {"tributary-recorder"}
BEHIND_INGRESS = {"tributary-hub", "tributary-stream"}


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_ports_and_probe_ports_are_where_the_service_listens(overlay: str, name: str) -> None:
    d = deployments(overlay)[name]
    service, _ = WORKLOADS[name]
    env = container_env(overlay, d)
    cls = settings_class(service)
    assert env.get("TRIBUTARY_HTTP_HOST") == "0.0.0.0", f"{name} must listen on all interfaces in a pod"
    assert env.get("TRIBUTARY_OPS_PORT"), f"{name}: no TRIBUTARY_OPS_PORT: health and metrics would be on the API port"
    ops = int(env["TRIBUTARY_OPS_PORT"] or 0)
    assert port_by_name(d, "ops") == ops, f"{name}: containerPort ops is not TRIBUTARY_OPS_PORT={ops}"
    names = {p["name"] for p in container(d)["ports"]}
    if name in OPS_ONLY:
        assert names == {"ops"}, f"{name} serves nothing but the ops port"
    else:
        listen = int(env.get("TRIBUTARY_HTTP_PORT") or cls.model_fields["http_port"].default)
        assert port_by_name(d, "http") == listen, f"{name}: containerPort http, the service listens on {listen}"
        assert names == {"http", "ops"} and listen != ops
    c = container(d)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert port_by_name(d, c[probe]["httpGet"]["port"]) == ops, f"{name}: {probe} off the ops port"
    docs = render(overlay)
    for svc in of_kind(docs, "Service").values():
        if svc["spec"]["selector"].get("app.kubernetes.io/name") == name:
            targets = {port_by_name(d, p["targetPort"]) for p in svc["spec"]["ports"]}
            if name in BEHIND_INGRESS:
                assert ops not in targets, f"{name}: its Service (behind an Ingress) exposes the ops port"
    annotations = d["spec"]["template"]["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/port") == str(ops)
    assert annotations.get("prometheus.io/path") == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_does_not_record_and_the_recorder_does(overlay: str) -> None:
    found = deployments(overlay)
    hub = container_env(overlay, found["tributary-hub"])
    assert hub.get("TRIBUTARY_RECORDERS_ENABLED") == "false", "recorders run in tributary-recorder, not the API"
    assert settings_class("hub").model_validate({"recorders_enabled": "false"}).recorders_enabled is False  # type: ignore[attr-defined]
    assert container(found["tributary-recorder"])["args"] == ["recorder"]
    # Both read the same database; each workload gets only the Secret keys it needs.
    assert (
        container_env(overlay, found["tributary-recorder"]).get("TRIBUTARY_MONGODB_DB") == hub["TRIBUTARY_MONGODB_DB"]
    )
    assert "TRIBUTARY_MONGODB_URL" not in secret_refs(found["tributary-stream"])
    assert "TRIBUTARY_MONGODB_URL" not in secret_refs(found["tributary-ingest"])
    assert "TRIBUTARY_JWT_SECRET" not in secret_refs(found["tributary-recorder"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_watches_the_recorders_queues(overlay: str) -> None:
    from tributary_hub import amqp

    queues = {
        t["metadata"]["queueName"]
        for t in of_kind(render(overlay), "ScaledObject")["tributary-recorder"]["spec"]["triggers"]
        if t["type"] == "rabbitmq"
    }
    assert queues == {amqp.EVENTS_RECORDER_QUEUE, amqp.SAMPLES_RECORDER_QUEUE}


def test_ingest_scaling_metric_is_one_ingest_exports() -> None:
    from prometheus_client import CollectorRegistry

    from tributary_ingest.metrics import IngestMetrics

    registry = CollectorRegistry()
    IngestMetrics(registry)
    exported = {m.name for m in registry.collect()}
    for overlay in OVERLAYS:
        for t in of_kind(render(overlay), "ScaledObject")["tributary-ingest"]["spec"]["triggers"]:
            if t["type"] == "prometheus":
                used = set(re.findall(r"tributary_[a-z_]+", t["metadata"]["query"]))
                assert used and used <= exported, f"{overlay}: the query uses {used - exported}, not exported"


@pytest.mark.parametrize("name", sorted(COMPOSE_WORKLOADS))
def test_compose_env_is_the_settings_class(name: str) -> None:
    service, _ = COMPOSE_WORKLOADS[name]
    raw = compose_env(compose()["services"][name])
    given = {"TRIBUTARY_JWT_SECRET": PLACEHOLDERS["TRIBUTARY_JWT_SECRET"], "RABBITMQ_PASSWORD": "a-random-password"}
    env: dict[str, str | None] = {k: interpolate(v, given) for k, v in raw.items()}
    _check_env(f"compose/{name}", service, env)
    cls = settings_class(service)
    port = int(env.get("TRIBUTARY_HTTP_PORT") or cls.model_fields["http_port"].default)
    s = compose()["services"][name]
    for mapping in s.get("ports", []):
        assert mapping.split(":")[-1] == str(port), f"compose/{name} publishes {mapping}, the service listens on {port}"
    ops = env.get("TRIBUTARY_OPS_PORT")
    assert ops and f":{ops}/readyz" in s["healthcheck"]["test"][-1], f"compose/{name}: /readyz on the ops port"


def test_every_settings_name_mentioned_under_deploy_exists() -> None:
    """Comments and the guide name settings too (`TRIBUTARY_MAX_BATCH_BYTES`): a renamed field must not leave
    them behind."""
    known = all_settings_env_names()
    for path in deploy_text_files():
        for name in sorted(set(re.findall(r"\bTRIBUTARY_[A-Z0-9_]+\b", path.read_text(errors="replace")))):
            assert name in known, f"{path}: {name} is not a field of any service's settings class"

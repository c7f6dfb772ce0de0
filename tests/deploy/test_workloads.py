"""What each rendered workload must have: probes, resources, graceful shutdown sized for its drain, a Service, a
ServiceAccount, a PodDisruptionBudget, autoscaling, NetworkPolicies that allow only what it needs, Ingresses
fit for websockets, and pinned images."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    K8S,
    OVERLAYS,
    SERVICES,
    WORKLOADS,
    container,
    container_env,
    deployments,
    image_tag,
    of_kind,
    pod_labels,
    port_by_name,
    prestop_seconds,
    render,
    selects,
)

CASES = [(o, w) for o in OVERLAYS for w in WORKLOADS]

# What each workload needs to reach (port -> why), and nothing more. DNS (53) is allowed to all.
NEEDS_EGRESS: dict[str, set[int]] = {
    "tributary-hub": {5672, 27017, 11211, 4318},  # broker, database, topic cache, traces
    "tributary-recorder": {5672, 27017, 4318},
    "tributary-ingest": {5672, 11211, 4318, 80, 443, 1883, 8883},  # + leases, + the connectors' sources
    "tributary-stream": {5672, 4318},  # history and API keys come from the hub over RPC, on the broker
}
# Prod only: the OIDC provider's JWKS over HTTPS for the two services that verify tokens.
PROD_EXTRA_EGRESS = {"tributary-hub": {443}, "tributary-stream": {443}}
BEHIND_INGRESS = {"tributary-hub", "tributary-stream"}
# uvicorn's own graceful shutdown after the service's drain, and a margin before SIGKILL.
UVICORN_SHUTDOWN_S = 5
MARGIN_S = 5


def _deployment(overlay: str, name: str) -> dict[str, Any]:
    found = deployments(overlay)
    assert name in found, f"{overlay}: no Deployment {name}"
    return found[name]


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_probes_resources_and_security(overlay: str, name: str) -> None:
    d = _deployment(overlay, name)
    c = container(d)
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        spec = c.get(probe)
        assert spec, f"{name}: no {probe}"
        assert spec["httpGet"]["path"] == path, f"{name}: {probe} asks {spec['httpGet']['path']}, not {path}"
        # The ops port: bound before any dependency is reached, never routed by an Ingress.
        assert spec["httpGet"]["port"] == "ops", f"{name}: {probe} on {spec['httpGet']['port']}, not the ops port"
    # The startup probe allows a slow start (connecting to the broker) before liveness takes over.
    startup = c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    res = c.get("resources", {})
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res.get(kind, {})), f"{name}: resources.{kind} needs cpu and memory"
    pod = d["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    tag = image_tag(c["image"])
    assert tag and tag != "latest", f"{overlay}: {name} runs {c['image']}: pin a tag"


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_termination_grace_covers_prestop_and_the_drain(overlay: str, name: str) -> None:
    d = _deployment(overlay, name)
    env = container_env(overlay, d)
    drain = float(env.get("TRIBUTARY_SHUTDOWN_GRACE_SECONDS") or 20.0)
    needed = prestop_seconds(d) + drain + UVICORN_SHUTDOWN_S + MARGIN_S
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= needed, f"{name}: terminationGracePeriodSeconds {grace} < preStop + drain + shutdown = {needed}"
    if name == "tributary-stream":
        # Websockets: the drain gets at least 20 s to send what is queued and close with 1012.
        assert drain >= 20


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_service_account_service_and_disruption_budget(overlay: str, name: str) -> None:
    docs = render(overlay)
    d = _deployment(overlay, name)
    labels = pod_labels(d)
    pod = d["spec"]["template"]["spec"]
    accounts = of_kind(docs, "ServiceAccount")
    assert pod["serviceAccountName"] == name and name in accounts, f"{name}: its own ServiceAccount"
    assert accounts[name].get("automountServiceAccountToken") is False
    services = [s for s in of_kind(docs, "Service").values() if selects({"matchLabels": s["spec"]["selector"]}, labels)]
    assert len(services) == 1, f"{name}: {len(services)} Services select its pods"
    for port in services[0]["spec"]["ports"]:
        port_by_name(d, port["targetPort"])
    pdbs = [p for p in of_kind(docs, "PodDisruptionBudget").values() if selects(p["spec"]["selector"], labels)]
    assert len(pdbs) == 1, f"{name}: {len(pdbs)} PodDisruptionBudgets"
    replicas = d["spec"].get("replicas", 1)
    if "minAvailable" in pdbs[0]["spec"]:
        # A budget that can never be met would block every node drain.
        assert int(pdbs[0]["spec"]["minAvailable"]) < replicas


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_autoscaling(overlay: str) -> None:
    docs = render(overlay)
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind(docs, "ScaledObject").values()}
    # Every workload has exactly one autoscaler: an HPA (hub, on CPU) or a KEDA ScaledObject (the others).
    assert set(hpas) == {"tributary-hub"}
    assert set(scaled) == {"tributary-recorder", "tributary-ingest", "tributary-stream"}
    for name, hpa in hpas.items():
        assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert hpa["spec"]["metrics"], name
        # The HPA scales on utilisation of requests: the containers must request CPU.
        assert "cpu" in container(_deployment(overlay, name))["resources"]["requests"]
    for name in WORKLOADS:
        # The autoscaler owns the count: a `replicas` in the manifest would reset it at every apply.
        assert "replicas" not in _deployment(overlay, name)["spec"], f"{overlay}: {name} sets spec.replicas"
    recorder = scaled["tributary-recorder"]["spec"]["triggers"]
    assert {t["type"] for t in recorder} == {"rabbitmq"}
    assert all(t["metadata"]["mode"] == "QueueLength" for t in recorder)
    assert scaled["tributary-ingest"]["spec"]["minReplicaCount"] >= (1 if overlay == "dev" else 2)
    # The stream scales on CPU and on open connections, never on memory (CPython rarely returns it).
    stream = scaled["tributary-stream"]["spec"]
    assert {t["type"] for t in stream["triggers"]} == {"cpu", "prometheus"}
    (connections,) = [t for t in stream["triggers"] if t["type"] == "prometheus"]
    assert "tributary_stream_connections" in connections["metadata"]["query"]
    # Scaling down the stream closes websockets: it must be slower than scaling up.
    behavior = stream["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert behavior["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]


def _allowed_egress_ports(docs: tuple[dict[str, Any], ...], labels: dict[str, str]) -> set[int]:
    ports: set[int] = set()
    for policy in of_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if "Egress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule without `to` allows everywhere"
            assert rule.get("ports"), f"{policy['metadata']['name']}: an egress rule without ports allows all ports"
            ports |= {int(p["port"]) for p in rule["ports"]}
    return ports


def _ingress_sources(docs: tuple[dict[str, Any], ...], labels: dict[str, str]) -> dict[str, set[int]]:
    sources: dict[str, set[int]] = {}
    for policy in of_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], labels):
            continue
        for rule in spec.get("ingress", []):
            assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule without `from` admits everyone"
            for peer in rule["from"]:
                ns = peer.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                assert ns, f"{policy['metadata']['name']}: admits {peer}, not a named namespace"
                if ns == "monitoring":  # Prometheus, not whatever else runs in that namespace
                    pods = peer.get("podSelector", {}).get("matchLabels", {})
                    assert pods == {"app.kubernetes.io/name": "prometheus"}, f"{policy['metadata']['name']}: {peer}"
                sources.setdefault(ns, set()).update(int(p["port"]) for p in rule.get("ports", []))
    return sources


@pytest.mark.parametrize(("overlay", "name"), CASES)
def test_network_policies_allow_only_what_the_service_needs(overlay: str, name: str) -> None:
    docs = render(overlay)
    d = _deployment(overlay, name)
    labels = pod_labels(d)
    deny = [
        p
        for p in of_kind(docs, "NetworkPolicy").values()
        if set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
        and selects(p["spec"]["podSelector"], labels)
    ]
    assert deny, f"{name}: no default-deny policy selects its pods"
    expected = NEEDS_EGRESS[name] | {53}
    if overlay == "prod":
        expected |= PROD_EXTRA_EGRESS.get(name, set())
    assert _allowed_egress_ports(docs, labels) == expected
    ops = port_by_name(d, "ops")
    sources = _ingress_sources(docs, labels)
    assert sources.get("monitoring") == {ops}, f"{name}: Prometheus scrapes the ops port {ops}, and only it"
    if name in BEHIND_INGRESS:
        assert sources.get("ingress-nginx") == {port_by_name(d, "http")}, f"{name}: the ingress reaches http only"
    else:
        assert "ingress-nginx" not in sources, f"{name} serves no clients: the ingress controller must not reach it"
    assert set(sources) <= {"monitoring", "ingress-nginx"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingresses_route_to_real_ports_and_keep_websockets_open(overlay: str) -> None:
    docs = render(overlay)
    ingresses = of_kind(docs, "Ingress")
    services = of_kind(docs, "Service")
    assert set(ingresses) == {"tributary-hub", "tributary-stream"}
    for ing in ingresses.values():
        assert ing["spec"]["ingressClassName"] == "nginx"
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                svc = services[backend["name"]]
                names = {p.get("name") for p in svc["spec"]["ports"]}
                numbers = {p["port"] for p in svc["spec"]["ports"]}
                port = backend["port"]
                assert port.get("name") in names or port.get("number") in numbers, f"{backend} is not a port"
        if overlay == "prod":
            assert ing["spec"].get("tls"), f"{ing['metadata']['name']}: TLS in prod"
    notes = ingresses["tributary-stream"]["metadata"]["annotations"]
    assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert int(notes["nginx.ingress.kubernetes.io/proxy-send-timeout"]) >= 3600
    assert notes["nginx.ingress.kubernetes.io/proxy-http-version"] == "1.1"
    assert notes["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"  # SSE
    hub_body = ingresses["tributary-hub"]["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert hub_body.endswith("m") and int(hub_body[:-1]) >= 16, "batch publishing needs 16 MiB bodies"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_image_is_pinned(overlay: str) -> None:
    for d in of_kind(render(overlay), "Deployment").values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            tag = image_tag(c["image"])
            assert tag and tag != "latest", f"{overlay}: {d['metadata']['name']} runs {c['image']}"
            assert any(ch.isdigit() for ch in tag), f"{overlay}: {c['image']}: a version, not a moving name"


# Routes for probes, Prometheus and API browsing: served on the pod, never through the Ingress.
OPERATIONAL = ("/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json")
# Internal contracts: the hub's AsyncAPI document describes its AMQP exchanges, not a public interface (the
# stream's describes the public websocket protocol and is routed).
INTERNAL = {"tributary-hub": ("/asyncapi.json",), "tributary-stream": ()}


def _app_paths(app: Any) -> set[str]:
    """Every path the app serves: its OpenAPI document's (FastAPI nests included routers, so `app.routes` alone
    misses them) and the routes and mounts outside the document (docs, static files)."""
    documented = set(app.openapi()["paths"])
    assert len(documented) > 3, "the OpenAPI document lists the API"
    return documented | {r.path for r in app.routes if getattr(r, "path", None)}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingresses_route_the_public_api_and_nothing_operational(overlay: str) -> None:
    from tributary_hub.app import create_app as hub_app
    from tributary_hub.settings import HubSettings
    from tributary_stream.app import create_app as stream_app
    from tributary_stream.settings import StreamSettings

    apps = {
        "tributary-hub": _app_paths(hub_app(HubSettings(dev_mode=True))),
        "tributary-stream": _app_paths(stream_app(StreamSettings(dev_mode=True))),
    }
    for name, ing in of_kind(render(overlay), "Ingress").items():
        prefixes = [p["path"] for rule in ing["spec"]["rules"] for p in rule["http"]["paths"]]
        assert all(p["pathType"] == "Prefix" for rule in ing["spec"]["rules"] for p in rule["http"]["paths"])
        assert "/" not in prefixes, f"{name}: `/` routes the operational endpoints too"
        hidden = OPERATIONAL + INTERNAL[name]
        for path in hidden:
            assert not any(path.startswith(p) for p in prefixes), f"{name}: {path} is reachable from outside"
        public = {p for p in apps[name] if not p.startswith(hidden)}
        for path in public:
            # ingress-nginx matches Prefix paths element by element: /topics covers /topics/{topic}/events.
            assert any(path == p or path.startswith(p + "/") for p in prefixes), f"{name}: {path} is not routed"


DIGEST = re.compile(r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9./_-]+@sha256:[0-9a-f]{64}$")
PLACEHOLDER = "sha256:" + "0" * 64


def test_prod_runs_tributary_images_by_digest_only() -> None:
    """A tag can be re-pointed; a digest is what was built, scanned and signed. The committed digests are
    placeholders (zeros) that the release step replaces (deploy/README.md, "Release")."""
    kustomization = yaml.safe_load((K8S / "overlays" / "prod" / "kustomization.yaml").read_text())
    entries = {i["name"]: i for i in kustomization["images"]}
    assert set(entries) == {f"tributary-{s}" for s in SERVICES}
    for name, entry in entries.items():
        assert "newTag" not in entry, f"prod {name}: a tag beside the digest"
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", entry.get("digest", "")), f"prod {name}: digest: sha256:<64 hex>"
    for d in deployments("prod").values():
        image = container(d)["image"]
        assert DIGEST.match(image), f"prod {d['metadata']['name']} runs {image}, not registry/name@sha256:<digest>"


def test_a_release_can_tell_placeholders_from_digests() -> None:
    """The release step's check (deploy/README.md): a rendered prod overlay still holding a placeholder digest
    is refused before it reaches a cluster."""
    rendered = yaml.safe_dump_all(render("prod"))
    assert PLACEHOLDER in rendered, "the committed overlay holds placeholders, not digests nobody verified"
    real = rendered.replace(PLACEHOLDER, "sha256:" + "ab" * 32)
    assert PLACEHOLDER not in real


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_ingress_reaches_an_ops_port(overlay: str) -> None:
    """Health and metrics live on the ops port: no Service behind an Ingress exposes it, so no path can reach it."""
    docs = render(overlay)
    services = of_kind(docs, "Service")
    found = deployments(overlay)
    for ing in of_kind(docs, "Ingress").values():
        for rule in ing["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                svc = services[path["backend"]["service"]["name"]]
                for d in found.values():
                    if not selects({"matchLabels": svc["spec"]["selector"]}, pod_labels(d)):
                        continue
                    ops = port_by_name(d, "ops")
                    for port in svc["spec"]["ports"]:
                        target = port_by_name(d, port["targetPort"])
                        assert target != ops, (
                            f"{overlay}: Service {svc['metadata']['name']} (behind an Ingress) exposes ops"
                        )


def test_prod_scrapes_every_workload_on_its_ops_port() -> None:
    """The Prometheus Operator ignores `prometheus.io/*` annotations: a PodMonitor per workload, on the ops port,
    in the workloads' namespace (the metrics KEDA's Prometheus triggers read are among them)."""
    docs = render("prod")
    (namespace,) = of_kind(docs, "Namespace")
    monitors = of_kind(docs, "PodMonitor")
    for name, d in deployments("prod").items():
        matching = [m for m in monitors.values() if selects(m["spec"]["selector"], pod_labels(d))]
        assert len(matching) == 1, f"{name}: {len(matching)} PodMonitors select its pods"
        monitor = matching[0]
        assert monitor["metadata"].get("namespace") == namespace
        assert "namespaceSelector" not in monitor["spec"], "its own namespace only"
        endpoints = monitor["spec"]["podMetricsEndpoints"]
        assert [(e["port"], e.get("path", "/metrics")) for e in endpoints] == [("ops", "/metrics")], name
        port_by_name(d, "ops")

"""Network and admission, read from the rendered overlays: no egress rule reaches link-local addresses (cloud
metadata) or the cluster's own pod, service and node ranges; where the plants are known, ingest reaches only
them; the default-deny covers every pod of the namespace and each dev dependency is opened only to its users;
the namespaces carry Pod Security labels and every pod meets the level its namespace enforces."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import K8S, OVERLAYS, WORKLOADS, of_kind, pod_labels, render, selects

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
METADATA = ipaddress.ip_network("169.254.169.254/32")
PSS_VERSION = "v1.30"


def _cluster_ranges(overlay: str) -> dict[str, IPNetwork]:
    """The overlay's ClusterNetwork (a local-config object: it is not rendered, so read it from the file)."""
    data = yaml.safe_load((K8S / "overlays" / overlay / "cluster-network.yaml").read_text())
    assert data["kind"] == "ClusterNetwork"
    assert data["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true", "never applied"
    spec = data["spec"]
    return {kind: ipaddress.ip_network(spec[f"{kind}CIDR"]) for kind in ("pod", "service", "node")}


def _ip_blocks(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    blocks = []
    for name, policy in of_kind(docs, "NetworkPolicy").items():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    blocks.append((name, peer["ipBlock"]))
    return blocks


def _reaches(block: dict[str, Any], net: IPNetwork) -> bool:
    """Whether the ipBlock admits any address of `net`."""
    cidr = ipaddress.ip_network(block["cidr"])
    if cidr.version != net.version or not cidr.overlaps(net):
        return False
    excepts = [ipaddress.ip_network(e) for e in block.get("except", [])]
    # Admitted part of `net` = (net ∩ cidr) minus the exceptions; empty only when the exceptions cover it.
    inside = net if net.subnet_of(cidr) else cidr  # type: ignore[arg-type]
    return not any(inside.subnet_of(e) for e in excepts if e.version == inside.version)  # type: ignore[arg-type]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_egress_rule_reaches_link_local_or_the_cluster_itself(overlay: str) -> None:
    docs = render(overlay)
    protected = {"link-local": LINK_LOCAL, **_cluster_ranges(overlay)}
    blocks = _ip_blocks(docs)
    assert blocks, f"{overlay}: no ipBlock rule at all (the connectors reach nothing?)"
    for name, block in blocks:
        cidr = ipaddress.ip_network(block["cidr"])  # a valid CIDR, not a placeholder left by a missing overlay
        for e in block.get("except", []):
            assert ipaddress.ip_network(e).subnet_of(cidr), f"{name}: except {e} is outside {cidr}"  # type: ignore[arg-type]
        for what, net in protected.items():
            assert not _reaches(block, net), f"{overlay}: {name} allows egress to {what} {net} ({block})"
        assert not _reaches(block, METADATA), f"{overlay}: {name} reaches the cloud metadata service"


def test_the_reach_check_is_not_vacuous() -> None:
    node = ipaddress.ip_network("10.0.0.0/16")
    assert _reaches({"cidr": "0.0.0.0/0"}, LINK_LOCAL)
    assert _reaches({"cidr": "0.0.0.0/0", "except": ["169.254.169.0/24"]}, LINK_LOCAL)
    assert not _reaches({"cidr": "0.0.0.0/0", "except": ["169.254.0.0/16"]}, LINK_LOCAL)
    assert _reaches({"cidr": "10.0.5.0/24"}, node) and not _reaches(
        {"cidr": "10.0.5.0/24", "except": ["10.0.0.0/8"]}, node
    )
    assert not _reaches({"cidr": "192.0.2.0/28"}, node)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_wide_rules_are_labelled_so_the_cluster_ranges_reach_them(overlay: str) -> None:
    """components/cluster-network fills the exceptions of policies labelled `tributary/egress: wide`: a wide rule
    in an unlabelled policy would keep its placeholders (and fail above) or have none."""
    for name, policy in of_kind(render(overlay), "NetworkPolicy").items():
        wide = [
            peer["ipBlock"]
            for rule in policy["spec"].get("egress", [])
            for peer in rule.get("to", [])
            if "ipBlock" in peer and ipaddress.ip_network(peer["ipBlock"]["cidr"]).prefixlen == 0
        ]
        if wide:
            assert policy["metadata"].get("labels", {}).get("tributary/egress") == "wide", name
            for block in wide:
                assert str(LINK_LOCAL) in block["except"], f"{name}: link-local is not excepted"


def test_prod_ingest_reaches_its_plants_only() -> None:
    docs = render("prod")
    ingest = pod_labels(of_kind(docs, "Deployment")["tributary-ingest"])
    for name, policy in of_kind(docs, "NetworkPolicy").items():
        if not selects(policy["spec"]["podSelector"], ingest):
            continue
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    net = ipaddress.ip_network(peer["ipBlock"]["cidr"])
                    assert net.prefixlen >= 16, f"{name}: ingest reaches {net} in prod; list the plants' addresses"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_default_deny_covers_every_pod_of_the_namespace(overlay: str) -> None:
    docs = render(overlay)
    deny = [
        p
        for p in of_kind(docs, "NetworkPolicy").values()
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, f"{overlay}: no default-deny policy selecting every pod (podSelector: {{}})"


def _admitted(docs: tuple[dict[str, Any], ...], target: dict[str, str], port: int) -> set[str]:
    """Who may open `port` on pods labelled `target`: Deployment names of this namespace, `ns:<name>` for other
    namespaces (whatever pod), `*` for anything wider."""
    pods = {name: pod_labels(d) for name, d in of_kind(docs, "Deployment").items()}
    who: set[str] = set()
    for policy in of_kind(docs, "NetworkPolicy").values():
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not selects(spec["podSelector"], target):
            continue
        for rule in spec.get("ingress", []):
            ports = {int(p["port"]) for p in rule.get("ports", [])}
            if ports and port not in ports:
                continue
            for peer in rule.get("from") or [{"ipBlock": {"cidr": "0.0.0.0/0"}}]:
                if "ipBlock" in peer:
                    who.add("*")
                elif "namespaceSelector" in peer:
                    ns = peer["namespaceSelector"].get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    who.add(f"ns:{ns}" if ns else "*")
                else:
                    who |= {name for name, labels in pods.items() if selects(peer["podSelector"], labels)}
    return who


# Dev's dependencies: port -> who may connect (Deployment names, other namespaces). Nothing else, no other port.
DEV_DEPENDENCIES: dict[str, dict[int, set[str]]] = {
    "rabbitmq": {5672: set(WORKLOADS) | {"ns:keda"}, 15672: set()},
    "mongodb": {27017: {"tributary-hub", "tributary-recorder"}},
    "memcached": {11211: {"tributary-hub", "tributary-ingest"}},
    "otel-collector": {4318: set(WORKLOADS), 4317: set(), 13133: set()},
    "jaeger": {4317: {"otel-collector"}, 16686: set()},
}


@pytest.mark.parametrize("name", sorted(DEV_DEPENDENCIES))
def test_dev_dependencies_are_open_only_to_their_users(name: str) -> None:
    docs = render("dev")
    deployment = of_kind(docs, "Deployment")[name]
    labels = pod_labels(deployment)
    declared = {p["containerPort"] for c in deployment["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
    assert set(DEV_DEPENDENCIES[name]) >= declared, f"{name}: a port nobody thought about: {declared}"
    for port, expected in DEV_DEPENDENCIES[name].items():
        assert _admitted(docs, labels, port) == expected, f"dev {name}:{port}"


PSS_LEVELS = {"dev": "baseline", "prod": "restricted"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_namespace_carries_pod_security_labels(overlay: str) -> None:
    namespaces = of_kind(render(overlay), "Namespace")
    assert len(namespaces) == 1
    labels = next(iter(namespaces.values()))["metadata"].get("labels", {})
    prefix = "pod-security.kubernetes.io/"
    assert labels.get(prefix + "enforce") == PSS_LEVELS[overlay], f"{overlay}: enforce {labels}"
    for mode in ("enforce", "audit", "warn"):
        assert labels.get(f"{prefix}{mode}-version") == PSS_VERSION, f"{overlay}: pin {mode}-version"
    # Warnings and audit always at `restricted`, so that a regression in a Tributary pod shows in dev too.
    assert labels.get(prefix + "warn") == labels.get(prefix + "audit") == "restricted"


def _baseline_violations(pod: dict[str, Any]) -> list[str]:
    """Pod Security Standards `baseline` (the checks that can apply to these manifests)."""
    out = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            out.append(key)
    for volume in pod.get("volumes", []):
        if "hostPath" in volume:
            out.append(f"hostPath volume {volume['name']}")
    allowed_caps = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}  # fmt: skip
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        extra = set(sc.get("capabilities", {}).get("add", [])) - allowed_caps
        if extra:
            out.append(f"{c['name']}: adds {extra}")
        if any(p.get("hostPort") for p in c.get("ports", [])):
            out.append(f"{c['name']}: hostPort")
    return out


def _restricted_violations(pod: dict[str, Any]) -> list[str]:
    """Pod Security Standards `restricted` on top of `baseline`."""
    out = _baseline_violations(pod)
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                       "projected", "secret"}  # fmt: skip
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= allowed_volumes:
            out.append(f"volume {volume['name']}: {kinds}")
    pod_sc = pod.get("securityContext", {})
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation must be false")
        if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is not True:
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile {seccomp}")
        caps = sc.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            out.append(f"{c['name']}: capabilities must drop ALL")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            out.append(f"{c['name']}: adds {caps['add']}")
    return out


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_meets_the_level_its_namespace_enforces(overlay: str) -> None:
    check = _restricted_violations if PSS_LEVELS[overlay] == "restricted" else _baseline_violations
    for name, d in of_kind(render(overlay), "Deployment").items():
        pod = d["spec"]["template"]["spec"]
        assert not check(pod), f"{overlay}: {name} would be refused by Pod Security {PSS_LEVELS[overlay]}"
        if name in WORKLOADS:  # Tributary's own pods meet `restricted` everywhere
            assert not _restricted_violations(pod), f"{overlay}: {name}: {_restricted_violations(pod)}"


def test_the_restricted_check_is_not_vacuous() -> None:
    pod = of_kind(render("prod"), "Deployment")["tributary-hub"]["spec"]["template"]["spec"]
    assert not _restricted_violations(pod)
    mutations: list[Callable[[dict[str, Any]], object]] = [
        lambda p: p["containers"][0]["securityContext"].update(allowPrivilegeEscalation=True),
        lambda p: p["securityContext"].pop("seccompProfile"),
        lambda p: p["containers"][0]["securityContext"]["capabilities"].update(add=["NET_ADMIN"]),
        lambda p: p.setdefault("volumes", []).append({"name": "h", "hostPath": {"path": "/"}}),
    ]
    for mutate in mutations:
        broken = yaml.safe_load(yaml.safe_dump(pod))
        mutate(broken)
        assert _restricted_violations(broken), "a violation went unnoticed"

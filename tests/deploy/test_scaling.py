"""Scaling, disruption and placement, read from the rendered overlays: KEDA's Prometheus triggers fail loudly and
fall back instead of reading a missing metric as 0; the queries read metrics the services export, of their own
namespace; PodDisruptionBudgets let unready pods go; replicas spread over nodes and (in prod) zones per revision;
the stream's memory is reserved whole and its connection limit fits in it."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.deploy.manifests import OVERLAYS, WORKLOADS, container, container_env, deployments, of_kind, render

# The stream's measured memory (deploy/README.md, "Stream memory"): RSS after start 74 MiB, 47 KiB per idle
# websocket with one subscription, 58 KiB with ten (bench-style measurement, 1000 connections). Budgeted:
BASELINE_MIB = 128  # the process before any client, rounded up
CONNECTION_KIB = 128  # one connection with its subscriptions and a share of queued frames, rounded up
HEADROOM = 0.25  # of the limit: history replays, slow clients' send buffers, allocator fragmentation


def quantity_bytes(value: str | int) -> int:
    """A Kubernetes memory quantity (`512Mi`, `2Gi`, `1G`, `1048576`) in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value))
    assert match and (match.group(2) in units or not match.group(2)), f"not a memory quantity: {value}"
    return int(float(match.group(1)) * units.get(match.group(2), 1))


# The events recorder's measured memory (bench/recorder_memory.py): ~110 MiB once ready; at the peak, a held event
# costs about twice its body (decoded, converted, encoded for the write).
RECORDER_BASELINE_MIB = 128
HELD_COST = 2


def recorder_memory_mb_for(limit_bytes: int) -> int:
    return int((limit_bytes * (1 - HEADROOM) / 2**20 - RECORDER_BASELINE_MIB) // HELD_COST)


def max_connections_for(limit_bytes: int) -> int:
    return int((limit_bytes * (1 - HEADROOM) - BASELINE_MIB * 2**20) // (CONNECTION_KIB * 2**10))


def _namespace(overlay: str) -> str:
    (name,) = of_kind(render(overlay), "Namespace")
    return name


def _exported_metrics() -> set[str]:
    from prometheus_client import CollectorRegistry

    from tributary_ingest.metrics import IngestMetrics
    from tributary_stream.metrics import StreamMetrics

    registry = CollectorRegistry()
    IngestMetrics(registry)
    names = {m.name for m in registry.collect()}
    names |= {m.name for m in StreamMetrics().registry.collect()}
    return names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prometheus_triggers_fail_loudly_and_fall_back(overlay: str) -> None:
    """A metric nobody scrapes must not read as 0 (KEDA's default, ignoreNullValues "true"): that never scales."""
    namespace = _namespace(overlay)
    exported = _exported_metrics()
    prometheus = 0
    for name, so in of_kind(render(overlay), "ScaledObject").items():
        spec = so["spec"]
        fallback = spec.get("fallback")
        assert fallback, f"{overlay}: {name} has no fallback: a failing scaler would leave the count where it is"
        assert fallback["failureThreshold"] >= 1
        assert spec.get("minReplicaCount", 0) <= fallback["replicas"] <= spec["maxReplicaCount"], name
        for trigger in spec["triggers"]:
            if trigger["type"] != "prometheus":
                continue
            prometheus += 1
            meta = trigger["metadata"]
            assert meta.get("ignoreNullValues") == "false", f"{overlay}: {name}/{trigger.get('name')}"
            # Fallback works only for AverageValue targets (KEDA's default for external metrics).
            assert trigger.get("metricType", "AverageValue") == "AverageValue"
            selectors = re.findall(r"\b([a-z_]+)\{([^}]*)\}", meta["query"])
            assert selectors, f"{name}: the query selects no metric by label"
            for metric, labels in selectors:
                assert metric in exported, f"{overlay}: {name} queries {metric}, which no service exports"
                assert f'namespace="{namespace}"' in labels, f"{overlay}: {name} reads {metric} of other namespaces"
    assert prometheus >= 2, "ingest and stream scale on Prometheus queries"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_disruption_budgets_let_unready_pods_go(overlay: str) -> None:
    pdbs = of_kind(render(overlay), "PodDisruptionBudget")
    assert set(pdbs) == set(WORKLOADS)
    for name, pdb in pdbs.items():
        # An unready pod holding the budget would block every node drain while it serves nothing.
        assert pdb["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow", f"{overlay}: {name}"
        assert pdb["spec"].get("maxUnavailable") == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_replicas_spread_over_nodes_and_zones_per_revision(overlay: str) -> None:
    for name, d in deployments(overlay).items():
        constraints = {c["topologyKey"]: c for c in d["spec"]["template"]["spec"]["topologySpreadConstraints"]}
        assert set(constraints) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        labels = d["spec"]["template"]["metadata"]["labels"]
        for c in constraints.values():
            assert c["maxSkew"] == 1
            assert c["labelSelector"]["matchLabels"].items() <= labels.items(), f"{name}: spreads other pods"
            # Per revision: a rollout's new pods spread among themselves, not against the old ones leaving.
            assert c.get("matchLabelKeys") == ["pod-template-hash"], f"{overlay}: {name}"
        zone = constraints["topology.kubernetes.io/zone"]
        if overlay == "prod":
            assert zone["whenUnsatisfiable"] == "DoNotSchedule", f"prod: {name} may land in one zone"
            assert zone.get("minDomains", 0) >= 2, f"prod: {name}: minDomains (the zones the node pools span)"
        else:
            assert "minDomains" not in zone or zone["whenUnsatisfiable"] == "DoNotSchedule"


def test_the_connection_budget_arithmetic() -> None:
    assert max_connections_for(quantity_bytes("1Gi")) == 5120
    assert max_connections_for(quantity_bytes("2Gi")) == 11264
    assert quantity_bytes("512Mi") == 512 * 2**20 and quantity_bytes("1G") == 10**9


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_stream_memory_is_reserved_whole_and_bounds_the_connections(overlay: str) -> None:
    d = deployments(overlay)["tributary-stream"]
    resources = container(d)["resources"]
    request, limit = resources["requests"]["memory"], resources["limits"]["memory"]
    assert quantity_bytes(request) == quantity_bytes(limit), f"{overlay}: stream memory request {request} != {limit}"
    env = container_env(overlay, d)
    assert env.get("TRIBUTARY_MAX_CONNECTIONS"), f"{overlay}: the stream's connection limit is not set"
    configured = int(env["TRIBUTARY_MAX_CONNECTIONS"] or 0)
    budget = max_connections_for(quantity_bytes(limit))
    assert configured <= budget, f"{overlay}: {configured} connections do not fit in {limit} (at most {budget})"
    assert configured >= budget * 0.8, f"{overlay}: {configured} connections waste most of {limit} ({budget} fit)"
    # Scale out well before pods refuse clients.
    so = of_kind(render(overlay), "ScaledObject")["tributary-stream"]
    (trigger,) = [t for t in so["spec"]["triggers"] if t["type"] == "prometheus"]
    target = int(trigger["metadata"]["threshold"])
    assert 0.4 * configured <= target <= 0.7 * configured, f"{overlay}: connections target {target} of {configured}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_recorders_held_messages_fit_in_its_memory_limit(overlay: str) -> None:
    """The broker counts messages, not bytes: the recorder's budgets for what it holds are set (events, and each
    of the samples and dead-letter recorders), and together they fit its limit."""
    d = deployments(overlay)["tributary-recorder"]
    limit = container(d)["resources"]["limits"]["memory"]
    env = container_env(overlay, d)
    for name in ("TRIBUTARY_RECORDER_EVENT_MEMORY_MB", "TRIBUTARY_RECORDER_MEMORY_MB"):
        assert env.get(name), f"{overlay}: the recorder's {name} is not set"
    held = int(env["TRIBUTARY_RECORDER_EVENT_MEMORY_MB"] or 0) + 2 * int(env["TRIBUTARY_RECORDER_MEMORY_MB"] or 0)
    budget = recorder_memory_mb_for(quantity_bytes(limit))
    assert held <= budget, f"{overlay}: {held} MiB of held messages do not fit in {limit} (at most {budget})"
    assert held >= budget * 0.5, f"{overlay}: {held} MiB leaves most of {limit} unused ({budget} fit)"
    assert recorder_memory_mb_for(quantity_bytes("512Mi")) == 128


def _memory_triggers(docs: tuple[dict[str, Any], ...]) -> list[str]:
    found = [
        h["metadata"]["name"]
        for h in of_kind(docs, "HorizontalPodAutoscaler").values()
        for m in h["spec"]["metrics"]
        if m.get("resource", {}).get("name") == "memory"
    ]
    found += [
        s["metadata"]["name"] for s in of_kind(docs, "ScaledObject").values() for t in s["spec"]["triggers"]
        if t["type"] == "memory"
    ]  # fmt: skip
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nothing_scales_on_memory(overlay: str) -> None:
    assert not _memory_triggers(render(overlay)), "CPython rarely returns memory: it never scales back down"

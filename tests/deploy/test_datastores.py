"""Prod's RabbitMQ and MongoDB clusters (the operators' custom resources): they have the CRDs' structure, are
three-member clusters whose secrets are only referenced, the services' config points at them, the
NetworkPolicies let the services reach them and their members reach each other, and their pods meet the
namespace's Pod Security level where the overrides reach."""

from __future__ import annotations

import copy
import os
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import (
    KUBERNETES_VERSION,
    SECRET_NAME,
    WORKLOADS,
    container_env,
    deployments,
    of_kind,
    pod_labels,
    render,
    selects,
)
from tests.deploy.operator_crds import (
    MONGODB_COMMUNITY,
    OPERATOR_CONTAINERS,
    RABBITMQ_CLUSTER,
    schema_for,
)
from tests.deploy.test_network import _restricted_violations
from tributary_hub.settings import HubSettings

Docs = tuple[dict[str, Any], ...]


def _one(docs: Docs, key: tuple[str, str]) -> dict[str, Any]:
    found = [d for d in docs if (d["apiVersion"], d["kind"]) == key]
    assert len(found) == 1, f"prod renders {len(found)} {key[1]}"
    return found[0]


def _namespace(docs: Docs) -> str:
    (name,) = of_kind(docs, "Namespace")
    return name


def rabbitmq_pod_labels(cluster: dict[str, Any]) -> dict[str, str]:
    """What the Cluster Operator labels its pods with (internal/metadata/label.go)."""
    return {"app.kubernetes.io/name": cluster["metadata"]["name"], "app.kubernetes.io/component": "rabbitmq"}


def mongodb_pod_labels(rs: dict[str, Any]) -> dict[str, str]:
    """The Community Operator's own label plus the template labels the override adds."""
    labels = {"app": f"{rs['metadata']['name']}-svc"}
    labels.update(rs["spec"]["statefulSet"]["spec"]["template"]["metadata"]["labels"])
    return labels


def _peer_admits(peer: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    """A peer of a policy of `namespace` admitting a pod of the same namespace labelled `labels`."""
    if "ipBlock" in peer:
        return False  # the pods here are addressed by selectors, not by address
    # No namespaceSelector: the policy's own namespace, which is the pod's.
    in_ns = selects(peer.get("namespaceSelector", {}), {"kubernetes.io/metadata.name": namespace})
    return in_ns and selects(peer.get("podSelector", {}), labels)


def _port_in(rule: dict[str, Any], port: int) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    return any(int(p["port"]) <= port <= int(p.get("endPort", p["port"])) for p in ports)


def allows(docs: Docs, src: dict[str, str], dst: dict[str, str], port: int) -> bool:
    """Whether pods labelled `src` may open `port` on pods labelled `dst`, both in the overlay's namespace: the
    egress of src's policies and the ingress of dst's must both allow it (pods no policy selects are open)."""
    ns = _namespace(docs)
    policies = list(of_kind(docs, "NetworkPolicy").values())

    def direction(selected: dict[str, str], other: dict[str, str], kind: str, field: str) -> bool:
        applying = [
            p
            for p in policies
            if kind in p["spec"].get("policyTypes", []) and selects(p["spec"]["podSelector"], selected)
        ]
        return not applying or any(
            _port_in(rule, port) and any(_peer_admits(peer, other, ns) for peer in rule.get(field, []))
            for p in applying
            for rule in p["spec"].get(kind.lower(), [])
        )

    return direction(src, dst, "Egress", "to") and direction(dst, src, "Ingress", "from")


@pytest.fixture(scope="module")
def docs() -> Docs:
    return render("prod")


def test_the_clusters_have_the_crd_structure_and_three_members(docs: Docs) -> None:
    rabbit = _one(docs, RABBITMQ_CLUSTER)
    mongo = _one(docs, MONGODB_COMMUNITY)
    for obj in (rabbit, mongo):
        jsonschema.validate(obj, schema_for(obj["apiVersion"], obj["kind"]))
    # An odd number, so that one side of a partition holds a majority; three survive one node lost.
    assert rabbit["spec"]["replicas"] == 3
    assert mongo["spec"]["members"] == 3 and mongo["spec"]["type"] == "ReplicaSet"
    config = rabbit["spec"]["rabbitmq"]["additionalConfig"]
    assert "cluster_partition_handling = pause_minority" in config
    assert "queue_leader_locator = balanced" in config
    # The embedded core/v1 objects are checked by the Kubernetes schemas: affinity and volume claims.
    for affinity, labels in (
        (rabbit["spec"]["affinity"], rabbitmq_pod_labels(rabbit)),
        (mongo["spec"]["statefulSet"]["spec"]["template"]["spec"]["affinity"], mongodb_pod_labels(mongo)),
    ):
        kubernetes_validate.validate(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "spec": {"affinity": affinity, "containers": [{"name": "c", "image": "i"}]},
            },
            KUBERNETES_VERSION,
            strict=True,
        )
        # Members in different zones, selected by the labels the pods really carry.
        (term,) = affinity["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert term["topologyKey"] == "topology.kubernetes.io/zone"
        assert selects(term["labelSelector"], labels)
    for claim in mongo["spec"]["statefulSet"]["spec"]["volumeClaimTemplates"]:
        kubernetes_validate.validate(
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim", **claim}, KUBERNETES_VERSION, strict=True
        )


def test_the_structure_check_is_not_vacuous(docs: Docs) -> None:
    rabbit = _one(docs, RABBITMQ_CLUSTER)
    mongo = _one(docs, MONGODB_COMMUNITY)
    mistakes: list[tuple[dict[str, Any], Any]] = [
        (rabbit, lambda o: o["spec"].update(replica=3)),  # misspelt
        (rabbit, lambda o: o["spec"]["rabbitmq"].update(additionalConfig="x" * 2001)),
        (rabbit, lambda o: o["spec"]["persistence"].update(storage="lots")),
        (rabbit, lambda o: o["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"].pop("containers")),
        (mongo, lambda o: o["spec"].pop("version")),
        (mongo, lambda o: o["spec"].update(type="Sharded")),
        (mongo, lambda o: o["spec"]["users"][0].pop("scramCredentialsSecretName")),
        (mongo, lambda o: o["spec"]["users"][0]["roles"][0].pop("db")),
        (mongo, lambda o: o["spec"]["security"]["authentication"].update(modes=["PLAIN"])),
    ]
    for original, mutate in mistakes:
        broken = copy.deepcopy(original)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema_for(broken["apiVersion"], broken["kind"]))


def test_the_database_password_is_only_referenced(docs: Docs) -> None:
    mongo = _one(docs, MONGODB_COMMUNITY)
    (user,) = mongo["spec"]["users"]
    assert user["passwordSecretRef"] == {"name": SECRET_NAME, "key": "mongodb-password"}
    assert not of_kind(docs, "Secret")
    # The services' user reads and writes their database, and nothing more.
    assert user["roles"] == [{"name": "readWrite", "db": "tributary"}]


def test_the_services_config_points_at_the_replica_set() -> None:
    mongo = _one(render("prod"), MONGODB_COMMUNITY)
    for name in ("tributary-hub", "tributary-recorder"):
        env = container_env("prod", deployments("prod")[name])
        assert env["TRIBUTARY_MONGODB_REPLICA_SET"] == mongo["metadata"]["name"], name
        assert env["TRIBUTARY_MONGODB_DB"] == mongo["spec"]["users"][0]["roles"][0]["db"], name
        # What the hub builds from exactly this environment: the replica set's safe options.
        values = {k: v for k, v in env.items() if k.startswith("TRIBUTARY_MONGODB_") and v is not None}
        saved = dict(os.environ)
        try:
            for key in [k for k in os.environ if k.startswith("TRIBUTARY_")]:
                del os.environ[key]
            os.environ.update(values)
            options = HubSettings(_env_file=None).mongodb_options()  # type: ignore[call-arg]
        finally:
            os.environ.clear()
            os.environ.update(saved)
        assert (options.write_concern, options.read_preference, options.retry_writes) == ("majority", "primary", True)
        assert options.replica_set == "mongodb"


def test_services_reach_the_clusters_and_members_reach_each_other(docs: Docs) -> None:
    rabbit = rabbitmq_pod_labels(_one(docs, RABBITMQ_CLUSTER))
    mongo = mongodb_pod_labels(_one(docs, MONGODB_COMMUNITY))
    pods = {name: pod_labels(d) for name, d in of_kind(docs, "Deployment").items()}
    for name in WORKLOADS:
        assert allows(docs, pods[name], rabbit, 5672), f"{name} cannot reach RabbitMQ"
        uses_db = name in ("tributary-hub", "tributary-recorder")
        assert allows(docs, pods[name], mongo, 27017) == uses_db, f"{name} and MongoDB"
    for port in (4369, 25672, 35672, 35682):
        assert allows(docs, rabbit, rabbit, port), f"RabbitMQ nodes cannot reach each other on {port}"
    assert allows(docs, mongo, mongo, 27017), "MongoDB members cannot reach each other"
    # Nothing else: the members are no way into the other cluster, and the management port is the operators' only.
    assert not allows(docs, rabbit, mongo, 27017) and not allows(docs, mongo, rabbit, 5672)
    assert not any(allows(docs, pods[name], rabbit, 15672) for name in WORKLOADS)
    assert not allows(docs, rabbit, rabbit, 5673)


def test_the_reach_check_is_not_vacuous(docs: Docs) -> None:
    rabbit = rabbitmq_pod_labels(_one(docs, RABBITMQ_CLUSTER))
    hub = pod_labels(of_kind(docs, "Deployment")["tributary-hub"])
    assert allows(docs, hub, rabbit, 5672)
    no_datastore_policies = tuple(
        d for d in docs if not (d["kind"] == "NetworkPolicy" and d["metadata"]["name"] in ("rabbitmq", "mongodb"))
    )
    assert not allows(no_datastore_policies, hub, rabbit, 5672), "the default-deny must close RabbitMQ's pods"
    assert not allows(no_datastore_policies, rabbit, rabbit, 25672)


@pytest.mark.parametrize("key", [RABBITMQ_CLUSTER, MONGODB_COMMUNITY], ids=lambda k: k[1])
def test_operator_pods_meet_restricted_where_the_overrides_reach(docs: Docs, key: tuple[str, str]) -> None:
    """The namespace enforces `restricted`: every container the operator creates gets what it does not set."""
    obj = _one(docs, key)
    spec = obj["spec"]
    template = (spec["override"]["statefulSet"] if key == RABBITMQ_CLUSTER else spec["statefulSet"])["spec"]["template"]
    pod = copy.deepcopy(template["spec"])
    for field, names in OPERATOR_CONTAINERS[key].items():
        assert {c["name"] for c in pod.get(field, [])} == names, f"{key[1]}: override every {field} by name"
    assert not _restricted_violations(pod), _restricted_violations(pod)

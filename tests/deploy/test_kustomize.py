"""Every overlay renders with `kubectl kustomize`, and every object it renders validates offline: built-in kinds
against the Kubernetes OpenAPI schemas (kubernetes-validate, strict: unknown fields are errors), KEDA's
custom resources against the structure below (kubernetes-validate has no schema for CRDs)."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.deploy.manifests import KUBERNETES_VERSION, OVERLAYS, SECRET_NAME, of_kind, render
from tests.deploy.operator_crds import OPERATOR_KINDS

KEDA_KINDS = {("keda.sh/v1alpha1", "ScaledObject"), ("keda.sh/v1alpha1", "TriggerAuthentication")}
PODMONITOR = ("monitoring.coreos.com/v1", "PodMonitor")
# PrometheusRule: its structure, rules and tests are checked in test_monitoring.py.
PROMETHEUSRULE = ("monitoring.coreos.com/v1", "PrometheusRule")
# RabbitmqCluster and MongoDBCommunity (prod): their structure is checked in test_datastores.py.
CRD_KINDS = KEDA_KINDS | {PODMONITOR, PROMETHEUSRULE} | OPERATOR_KINDS

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": _NAME,
        "namespace": _NAME,
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "additionalProperties": False,
}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_NUMERIC_STRING = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}

# The fields of KEDA 2.x's ScaledObject and TriggerAuthentication CRDs that these manifests may use.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": _NAME,
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "fallback": {
                    "type": "object",
                    "required": ["failureThreshold", "replicas"],
                    "additionalProperties": False,
                    "properties": {
                        "failureThreshold": {"type": "integer", "minimum": 1},
                        "replicas": {"type": "integer", "minimum": 1},
                    },
                },
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"name": {"type": "string"}, "behavior": {"type": "object"}},
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"enum": ["rabbitmq", "prometheus", "cpu", "memory"]},
                            "name": _NAME,
                            "metadata": _STRING_MAP,
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "authenticationRef": {
                                "type": "object",
                                "required": ["name"],
                                "additionalProperties": False,
                                "properties": {
                                    "name": _NAME,
                                    "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
                                },
                            },
                        },
                        # Per trigger type, the metadata that scaler requires (KEDA docs, scalers/*).
                        "allOf": [
                            {
                                "if": {"properties": {"type": {"const": "rabbitmq"}}},
                                "then": {
                                    "required": ["authenticationRef"],
                                    "properties": {
                                        "metadata": {
                                            "required": ["protocol", "mode", "queueName", "value"],
                                            "properties": {
                                                "protocol": {"enum": ["amqp", "http", "auto"]},
                                                "mode": {"enum": ["QueueLength", "MessageRate"]},
                                                "value": _NUMERIC_STRING,
                                                "queueName": {"type": "string", "minLength": 1},
                                            },
                                        }
                                    },
                                },
                            },
                            {
                                "if": {"properties": {"type": {"const": "prometheus"}}},
                                "then": {
                                    "properties": {
                                        "metadata": {
                                            "required": ["serverAddress", "query", "threshold"],
                                            "properties": {
                                                "serverAddress": {"type": "string", "pattern": "^https?://"},
                                                "threshold": _NUMERIC_STRING,
                                                "ignoreNullValues": {"enum": ["true", "false"]},
                                            },
                                        }
                                    }
                                },
                            },
                            {
                                "if": {"properties": {"type": {"enum": ["cpu", "memory"]}}},
                                "then": {
                                    "required": ["metricType"],
                                    "properties": {
                                        "metricType": {"enum": ["Utilization", "AverageValue"]},
                                        "metadata": {"required": ["value"], "properties": {"value": _NUMERIC_STRING}},
                                    },
                                },
                            },
                        ],
                    },
                },
            },
        },
    },
}

TRIGGER_AUTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "TriggerAuthentication"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "minProperties": 1,
            "properties": {
                "secretTargetRef": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["parameter", "name", "key"],
                        "additionalProperties": False,
                        "properties": {"parameter": {"type": "string"}, "name": _NAME, "key": {"type": "string"}},
                    },
                }
            },
        },
    },
}


# The fields of the Prometheus Operator's PodMonitor (monitoring.coreos.com/v1) that these manifests may use.
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"matchLabels": _STRING_MAP, "matchExpressions": {"type": "array"}},
}
PODMONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": _METADATA,
        "spec": {
            "type": "object",
            "required": ["selector", "podMetricsEndpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {"type": "object"},
                "jobLabel": {"type": "string"},
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["port"],
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                            "scrapeTimeout": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                        },
                    },
                },
            },
        },
    },
}


def validate_builtin(obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_renders_and_every_builtin_object_validates(overlay: str) -> None:
    docs = render(overlay)
    validated = []
    for obj in docs:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_KINDS:
            continue
        try:
            validate_builtin(obj)
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{overlay}: no Kubernetes {KUBERNETES_VERSION} schema for {key}: {exc.message}")
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{overlay}: {obj['kind']}/{obj['metadata']['name']} invalid at {where}: {exc.message}")
        validated.append(obj["kind"])
    # The overlay renders what the issue lists (the CRDs are checked below).
    for kind in (
        "Deployment",
        "Service",
        "ConfigMap",
        "ServiceAccount",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Ingress",
        "Namespace",
    ):
        assert kind in validated, f"{overlay} renders no {kind}"


def test_the_schema_validation_is_not_vacuous() -> None:
    """A mistake the validator must catch: a probe field misspelt, a port as a word where a number belongs."""
    deployment = copy.deepcopy(of_kind(render("prod"), "Deployment")["tributary-hub"])
    validate_builtin(deployment)
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["periodSecond"] = probe.pop("periodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment)
    deployment = copy.deepcopy(of_kind(render("prod"), "Deployment")["tributary-hub"])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_builtin(deployment)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_objects_have_the_crd_structure_and_point_at_what_exists(overlay: str) -> None:
    docs = render(overlay)
    kinds = {(d["apiVersion"], d["kind"]) for d in docs}
    unknown = {k for k in kinds if k[0].split("/")[0] not in ("v1", "apps", "policy", "autoscaling")}
    unknown -= {
        ("networking.k8s.io/v1", "NetworkPolicy"),
        ("networking.k8s.io/v1", "Ingress"),
    }
    assert KEDA_KINDS <= unknown <= CRD_KINDS, (
        f"{overlay}: custom kinds without a structural check: {unknown - CRD_KINDS}"
    )
    for monitor in of_kind(docs, "PodMonitor").values():
        jsonschema.validate(monitor, PODMONITOR_SCHEMA)

    auths = of_kind(docs, "TriggerAuthentication")
    for auth in auths.values():
        jsonschema.validate(auth, TRIGGER_AUTH_SCHEMA)
        for ref in auth["spec"]["secretTargetRef"]:
            assert ref["name"] == SECRET_NAME, f"{auth['metadata']['name']} reads Secret {ref['name']}"

    scaled = of_kind(docs, "ScaledObject")
    assert set(scaled) == {"tributary-recorder", "tributary-ingest", "tributary-stream"}, f"{overlay}: {sorted(scaled)}"
    deployments = of_kind(docs, "Deployment")
    hpa_targets = {h["spec"]["scaleTargetRef"]["name"] for h in of_kind(docs, "HorizontalPodAutoscaler").values()}
    for name, so in scaled.items():
        jsonschema.validate(so, SCALED_OBJECT_SCHEMA)
        spec = so["spec"]
        target = spec["scaleTargetRef"]["name"]
        assert target in deployments, f"{name} scales {target}, which is not rendered"
        assert spec.get("scaleTargetRef", {}).get("kind", "Deployment") == "Deployment"
        # KEDA makes its own HPA: a second one on the same Deployment would fight it.
        assert target not in hpa_targets, f"{target} has both a ScaledObject and an HPA"
        assert spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]
        for trigger in spec["triggers"]:
            ref = trigger.get("authenticationRef")
            if ref:
                assert ref["name"] in auths, f"{name}: TriggerAuthentication {ref['name']} is not rendered"


def test_the_crd_structure_check_is_not_vacuous() -> None:
    so = copy.deepcopy(of_kind(render("dev"), "ScaledObject")["tributary-recorder"])
    jsonschema.validate(so, SCALED_OBJECT_SCHEMA)
    broken = copy.deepcopy(so)
    del broken["spec"]["triggers"][0]["metadata"]["queueName"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)
    broken = copy.deepcopy(so)
    broken["spec"]["triggers"][0]["metadata"]["mode"] = "Depth"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)
    broken = copy.deepcopy(so)
    broken["spec"]["scaleTargetRef"]["nmae"] = "x"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_committed_only_referenced(overlay: str) -> None:
    docs = render(overlay)
    assert not of_kind(docs, "Secret"), f"{overlay} renders a Secret: secrets are created in the cluster, not here"
    refs = set()
    for d in of_kind(docs, "Deployment").values():
        for c in d["spec"]["template"]["spec"]["containers"]:
            for var in c.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add(ref["name"])
    assert refs == {SECRET_NAME}, f"{overlay}: Secrets referenced: {refs}"


def test_the_podmonitor_structure_check_is_not_vacuous() -> None:
    monitor = copy.deepcopy(of_kind(render("prod"), "PodMonitor")["tributary-hub"])
    jsonschema.validate(monitor, PODMONITOR_SCHEMA)
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["targetPort"] = 9000  # deprecated, and not what we mean
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PODMONITOR_SCHEMA)
    broken = copy.deepcopy(monitor)
    broken["spec"]["podMetricsEndpoints"][0]["interval"] = "30"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, PODMONITOR_SCHEMA)

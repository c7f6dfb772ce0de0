"""The structure of the two operators' custom resources that prod renders, for offline validation (kubernetes-validate
has no CRD schemas): the fields these manifests may use, with the types, enums, patterns and required fields of
the operators' own CRDs (rabbitmq/cluster-operator config/crd/bases/rabbitmq.com_rabbitmqclusters.yaml,
mongodb/mongodb-kubernetes-operator config/crd/bases/mongodbcommunity.mongodb.com_mongodbcommunity.yaml).
Unknown fields are errors, as the API server's structural pruning would silently drop them."""

from __future__ import annotations

from typing import Any

RABBITMQ_CLUSTER = ("rabbitmq.com/v1beta1", "RabbitmqCluster")
MONGODB_COMMUNITY = ("mongodbcommunity.mongodb.com/v1", "MongoDBCommunity")
OPERATOR_KINDS = {RABBITMQ_CLUSTER, MONGODB_COMMUNITY}

_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 253}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": _NAME, "namespace": _NAME, "labels": _STRING_MAP, "annotations": _STRING_MAP},
}
# A resource.Quantity, as the CRDs spell it.
_QUANTITY = {
    "anyOf": [
        {"type": "integer"},
        {
            "type": "string",
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
        },
    ]
}
_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "limits": {"type": "object", "additionalProperties": _QUANTITY},
        "requests": {"type": "object", "additionalProperties": _QUANTITY},
    },
}
# Pod-level fields the overrides set; the rest of a pod spec is the operator's (merged by container name).
_CONTAINER_OVERRIDE = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}, "resources": _RESOURCES},
}


def _pod_template_override(required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "metadata": {"type": "object", "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP}},
            "spec": {
                "type": "object",
                "required": list(required),
                "properties": {
                    "securityContext": {"type": "object"},
                    "affinity": {"type": "object"},
                    "containers": {"type": "array", "items": _CONTAINER_OVERRIDE},
                    "initContainers": {"type": "array", "items": _CONTAINER_OVERRIDE},
                },
            },
        },
    }


def _resource(key: tuple[str, str], spec: dict[str, Any]) -> dict[str, Any]:
    """A custom resource of `key` (apiVersion, kind) whose spec is `spec`, nothing else at the top."""
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": key[0]},
            "kind": {"const": key[1]},
            "metadata": _METADATA,
            "spec": {"type": "object", "additionalProperties": False, **spec},
        },
    }


RABBITMQ_CLUSTER_SCHEMA = _resource(
    RABBITMQ_CLUSTER,
    {
        "properties": {
            "replicas": {"type": "integer", "minimum": 0},
            "image": {"type": "string"},
            "imagePullSecrets": {"type": "array", "items": {"type": "object"}},
            "delayStartSeconds": {"type": "integer", "minimum": 0},
            "terminationGracePeriodSeconds": {"type": "integer", "minimum": 0},
            "skipPostDeploySteps": {"type": "boolean"},
            "persistence": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"storage": _QUANTITY, "storageClassName": {"type": "string"}},
            },
            "resources": _RESOURCES,
            "rabbitmq": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "additionalConfig": {"type": "string", "maxLength": 2000},
                    "additionalPlugins": {
                        "type": "array",
                        "maxItems": 100,
                        "items": {"type": "string", "pattern": r"^\w+$", "maxLength": 100},
                    },
                    "advancedConfig": {"type": "string", "maxLength": 100000},
                    "envConfig": {"type": "string", "maxLength": 100000},
                },
            },
            "service": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "type": {"enum": ["ClusterIP", "LoadBalancer", "NodePort"]},
                    "annotations": _STRING_MAP,
                },
            },
            "affinity": {"type": "object"},  # a core/v1 Affinity: validated by kubernetes-validate in a pod
            "tolerations": {"type": "array", "items": {"type": "object"}},
            "tls": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "secretName": {"type": "string"},
                    "caSecretName": {"type": "string"},
                    "disableNonTLSListeners": {"type": "boolean"},
                },
            },
            "override": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "service": {"type": "object"},
                    "statefulSet": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    # The CRD requires containers in an overridden pod spec.
                                    "template": _pod_template_override(required=("containers",))
                                },
                            }
                        },
                    },
                },
            },
        },
    },
)

_SECRET_KEY_REF = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {"name": _NAME, "key": {"type": "string", "minLength": 1}},
}
MONGODB_COMMUNITY_SCHEMA = _resource(
    MONGODB_COMMUNITY,
    {
        "required": ["security", "type", "users", "version"],
        "properties": {
            "members": {"type": "integer"},
            "arbiters": {"type": "integer"},
            "type": {"enum": ["ReplicaSet"]},
            "version": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+\.[0-9]+$"},
            "featureCompatibilityVersion": {"type": "string"},
            "additionalMongodConfig": {"type": "object"},
            "additionalConnectionStringConfig": {"type": "object"},
            "replicaSetHorizons": {"type": "array", "items": _STRING_MAP},
            "memberConfig": {"type": "array", "items": {"type": "object"}},
            "agent": {"type": "object"},
            "prometheus": {"type": "object", "required": ["passwordSecretRef", "username"]},
            "security": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "authentication": {
                        "type": "object",
                        "required": ["modes"],
                        "additionalProperties": False,
                        "properties": {
                            "modes": {
                                "type": "array",
                                "items": {"enum": ["SCRAM", "SCRAM-SHA-256", "SCRAM-SHA-1", "X509"]},
                            },
                            "ignoreUnknownUsers": {"type": ["boolean", "null"]},
                            "agentMode": {"enum": ["SCRAM", "SCRAM-SHA-256", "SCRAM-SHA-1", "X509"]},
                            "agentCertificateSecretRef": {"type": "object"},
                        },
                    },
                    "tls": {"type": "object", "required": ["enabled"]},
                    "roles": {"type": "array", "items": {"type": "object"}},
                },
            },
            "users": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name", "passwordSecretRef", "roles", "scramCredentialsSecretName"],
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "db": {"type": "string"},
                        "passwordSecretRef": _SECRET_KEY_REF,
                        "roles": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["db", "name"],
                                "additionalProperties": False,
                                "properties": {"db": {"type": "string"}, "name": {"type": "string"}},
                            },
                        },
                        "scramCredentialsSecretName": {
                            "type": "string",
                            "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                        },
                        "connectionStringSecretName": {"type": "string"},
                        "connectionStringSecretNamespace": {"type": "string"},
                        "additionalConnectionStringConfig": {"type": "object"},
                    },
                },
            },
            "statefulSet": {
                "type": "object",
                "required": ["spec"],
                "additionalProperties": False,
                "properties": {
                    "metadata": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"labels": _STRING_MAP, "annotations": _STRING_MAP},
                    },
                    "spec": {
                        "type": "object",
                        "properties": {
                            "template": _pod_template_override(),
                            "volumeClaimTemplates": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                },
            },
        },
    },
)

# The containers each operator puts in its pods (the overrides are merged into them by name): rabbitmq/cluster-operator
# internal/resource/statefulset.go, mongodb-kubernetes-operator controllers/construct/mongodbstatefulset.go.
OPERATOR_CONTAINERS: dict[tuple[str, str], dict[str, set[str]]] = {
    RABBITMQ_CLUSTER: {"containers": {"rabbitmq"}, "initContainers": {"setup-container"}},
    MONGODB_COMMUNITY: {
        "containers": {"mongod", "mongodb-agent"},
        "initContainers": {"mongod-posthook", "mongodb-agent-readinessprobe"},
    },
}


def schema_for(api_version: str, kind: str) -> dict[str, Any]:
    return {RABBITMQ_CLUSTER: RABBITMQ_CLUSTER_SCHEMA, MONGODB_COMMUNITY: MONGODB_COMMUNITY_SCHEMA}[(api_version, kind)]

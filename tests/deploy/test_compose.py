"""deploy/compose.yaml: valid against the Compose specification (the `compose-spec` parser), every image pinned,
health checks everywhere they can run, start order gated on health, the recorder in its own container."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from compose_spec import PyCompose

from tests.deploy.manifests import (
    COMPOSE,
    COMPOSE_WORKLOADS,
    DEPLOY,
    ROOT,
    cli_subcommands,
    compose,
    compose_env,
    compose_text,
    image_tag,
    project_version,
)

# Anything that looks like a version: digits somewhere in the tag, never a moving name.
VERSION_TAG = re.compile(r"^[0-9][0-9A-Za-z._-]*$|^[A-Za-z0-9._-]*[0-9]+\.[0-9]+[0-9A-Za-z._-]*$")


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    data = compose()
    try:
        parsed = PyCompose.from_json(json.dumps(data))
    except ValueError as exc:
        pytest.fail(f"{COMPOSE.relative_to(ROOT)} is not a valid Compose file: {exc}")
    assert set(parsed.service_names()) == set(data["services"])


def test_the_spec_check_is_not_vacuous() -> None:
    data = compose()
    data["services"]["hub"]["depends_on"]["mongo"]["condition"] = "service_ready"
    with pytest.raises(ValueError, match="service_ready"):
        PyCompose.from_json(json.dumps(data))
    data = compose()
    data["services"]["hub"]["helthcheck"] = data["services"]["hub"].pop("healthcheck")
    with pytest.raises(ValueError, match="helthcheck"):
        PyCompose.from_json(json.dumps(data))


def test_every_image_is_pinned_and_the_required_platform_is_there() -> None:
    services = compose()["services"]
    images = {name: s["image"] for name, s in services.items()}
    for name, image in images.items():
        tag = image_tag(image)
        assert tag and tag != "latest" and VERSION_TAG.match(tag), f"{name}: image {image} is not pinned to a version"
    repos = {image.split(":")[0] for image in images.values()}
    assert {"mongo", "rabbitmq", "memcached"} <= repos, "the real MongoDB, RabbitMQ and Memcached images"
    assert "-management" in images["rabbitmq"] and image_tag(images["rabbitmq"]).startswith("3.")  # type: ignore[union-attr]
    assert any("opentelemetry-collector" in r for r in repos), "an OpenTelemetry Collector"
    assert any("jaeger" in r for r in repos), "a trace backend"


def test_health_checks_and_health_gated_start_order() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "healthcheck" not in service:
            # Only images that cannot run a check (no shell, no client) may go without, and they must say why.
            assert service.get("x-healthcheck-note"), f"{name}: no healthcheck and no x-healthcheck-note saying why"
            continue
        test = service["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck test {test}"
        assert service["healthcheck"].get("disable") is not True
    for name, service in services.items():
        deps = service.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must name a condition for each dependency"
        for dep, how in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            condition = how.get("condition")
            if "healthcheck" in services[dep]:
                assert condition == "service_healthy", f"{name} -> {dep}: wait for service_healthy, not {condition}"
            else:
                assert condition == "service_started", f"{name} -> {dep}"
    # The Tributary services wait for what their /readyz checks.
    needs = {
        "hub": {"mongo", "rabbitmq", "memcached"},
        "hub-recorder": {"mongo", "rabbitmq"},
        "ingest": {"rabbitmq", "memcached"},
        "stream": {"rabbitmq", "hub"},
    }
    for name, wanted in needs.items():
        gated = {d for d, how in services[name]["depends_on"].items() if how["condition"] == "service_healthy"}
        assert wanted <= gated, f"{name} starts before {wanted - gated} is healthy"


@pytest.mark.parametrize("name", sorted(COMPOSE_WORKLOADS))
def test_tributary_services_build_from_their_dockerfile(name: str) -> None:
    service_dir, subcommand = COMPOSE_WORKLOADS[name]
    s = compose()["services"][name]
    build = s["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert context == ROOT, f"{name}: build context must be the repository root"
    dockerfile = context / build["dockerfile"]
    assert dockerfile == DEPLOY / "docker" / f"{service_dir}.Dockerfile" and dockerfile.is_file()
    # The built image's tag is the service's version.
    assert s["image"] == f"tributary-{service_dir}:{project_version(service_dir)}"
    assert s["command"] == [subcommand] and subcommand in cli_subcommands(service_dir)
    assert s["healthcheck"]["test"][:3] == ["CMD", "python", "-c"], f"{name}: python health check (no curl)"
    assert "/readyz" in s["healthcheck"]["test"][3]


def test_the_recorder_runs_alone_and_the_api_does_not_record() -> None:
    services = compose()["services"]
    assert compose_env(services["hub"])["TRIBUTARY_RECORDERS_ENABLED"] == "false"
    assert services["hub-recorder"]["command"] == ["recorder"]
    assert "ports" not in services["hub-recorder"], "the recorder serves no clients"


def test_stop_grace_covers_the_stream_drain() -> None:
    stream = compose()["services"]["stream"]
    drain = float(compose_env(stream).get("TRIBUTARY_SHUTDOWN_GRACE_SECONDS", "20"))
    grace = stream["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) >= drain + 10, f"stop_grace_period {grace} for a {drain} s drain"


def test_mounted_files_exist() -> None:
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (COMPOSE.parent / source).resolve().exists(), f"{name} mounts {source}, which does not exist"


def test_collector_pipeline_is_wired_and_the_same_in_compose_and_dev() -> None:
    config = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    for pipeline in config["service"]["pipelines"].values():
        for part in ("receivers", "processors", "exporters"):
            for name in pipeline.get(part, []):
                assert name in config[part], f"pipeline uses {part[:-1]} {name}, which is not defined"
    assert "http" in config["receivers"]["otlp"]["protocols"], "the services export OTLP over HTTP"
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    services = compose()["services"]
    for exporter in config["exporters"].values():
        host = exporter["endpoint"].split("://")[-1].split(":")[0]
        assert host in services, f"the collector exports to {host}, which compose does not run"
    endpoint = services["hub"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]
    assert endpoint == "http://otel-collector:4318" and "otel-collector" in services
    dev = yaml.safe_load((DEPLOY / "k8s" / "overlays" / "dev" / "collector.yaml").read_text())
    assert dev == config, "the dev overlay's collector.yaml drifted from deploy/otel/collector.yaml"


def test_published_ports_are_bound_to_loopback_only() -> None:
    """A laptop on a café's network must not offer RabbitMQ's management UI or the API to it."""
    for name, service in compose()["services"].items():
        for mapping in service.get("ports", []):
            assert isinstance(mapping, str) and mapping.startswith("127.0.0.1:"), (
                f"{name} publishes {mapping} on every interface: bind it to 127.0.0.1"
            )


def test_no_credential_has_a_default() -> None:
    """Passwords and secrets come from the environment or compose refuses to start (`${VAR:?message}`)."""
    text = compose_text()
    references = re.findall(r"\$\{([A-Z0-9_]+)(:-|:\?|-|\?)?([^}]*)\}", text)
    secret_like = [(n, op) for n, op, _ in references if re.search(r"PASS|SECRET|TOKEN|KEY", n)]
    assert secret_like, "compose takes no credential from the environment at all"
    for name, op in secret_like:
        assert op == ":?", f"${{{name}}} has a default or may be empty: use ${{{name}:?message}}"
    rabbit = compose_env(compose()["services"]["rabbitmq"])
    assert rabbit.get("RABBITMQ_DEFAULT_USER") not in (None, "guest")
    assert rabbit["RABBITMQ_DEFAULT_PASS"].startswith("${RABBITMQ_PASSWORD:?")


def test_images_build_on_a_base_pinned_by_digest() -> None:
    """The Dockerfiles take the base image's digest as a build ARG without default; compose must pass it, and
    refuse to build without it."""
    for name, service in compose()["services"].items():
        if "build" in service:
            digest = service["build"].get("args", {}).get("PYTHON_DIGEST", "")
            assert digest.startswith("${PYTHON_DIGEST:?"), f"{name}: build arg PYTHON_DIGEST must be required"

"""The Dockerfiles, parsed by BuildKit's own parser: multi-stage, a pinned slim Python 3.11 base, only this
service and libs/common installed with constraints.txt, a non-root user, a Python HEALTHCHECK, exec-form
ENTRYPOINT and CMD naming the service's console script and a real subcommand."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.deploy.manifests import (
    ROOT,
    SERVICES,
    cli_subcommands,
    console_script,
    dockerfile_env,
    dockerfile_path,
    entrypoint_argv,
    env_names,
    healthcheck_argv,
    settings_class,
    stages,
)

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?$")


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_from_a_pinned_slim_python(service: str) -> None:
    assert dockerfile_path(service).is_file(), f"deploy/docker/{service}.Dockerfile is missing"
    all_stages = stages(service)
    assert len(all_stages) >= 2, f"{service}: multi-stage (build, then runtime)"
    names = {s.name for s in all_stages}
    for stage in all_stages:
        if stage.image in names:  # FROM an earlier stage
            continue
        assert ":" in stage.image and not stage.image.endswith(":latest"), f"{service}: FROM {stage.image}"
        assert PINNED_PYTHON.match(stage.image), f"{service}: FROM {stage.image} is not a pinned python:3.11.x-slim"
    runtime = all_stages[-1]
    copies_from_build = [c for c in runtime.all("COPY") if any(f.startswith("--from=") for f in c.flags)]
    assert copies_from_build, f"{service}: the runtime stage copies the built environment from the build stage"
    # The runtime stage installs nothing itself: no compilers or pip caches in the final image.
    for run in runtime.all("RUN"):
        assert "pip install" not in run.value[0], f"{service}: pip install in the runtime stage"


@pytest.mark.parametrize("service", SERVICES)
def test_only_this_service_and_common_are_installed_with_constraints(service: str) -> None:
    copied: set[str] = set()
    for stage in stages(service):
        for c in stage.all("COPY"):
            if any(f.startswith("--from=") for f in c.flags):
                continue
            copied |= {src.rstrip("/") for src in c.value[:-1]}
    assert copied == {"constraints.txt", "libs/common", f"services/{service}"}, f"{service} copies {copied}"
    installs = [c.value[0] for s in stages(service) for c in s.all("RUN") if "pip install" in c.value[0]]
    assert len(installs) == 1, f"{service}: one pip install"
    words = shlex.split(installs[0].split("&&")[0])
    assert "-c" in words and words[words.index("-c") + 1] == "constraints.txt", "pip install -c constraints.txt"
    assert "-e" not in words and "--editable" not in words, "not editable: the sources stay in the build stage"
    targets = {w.rstrip("/") for w in words if w.startswith("./")}
    assert targets == {"./libs/common", f"./services/{service}"}
    ignore = dockerfile_path(service).with_name(f"{service}.Dockerfile.dockerignore")
    assert ignore.is_file(), f"{ignore.name}: keep .venv, .local and other services out of the build context"
    lines = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*" and f"!services/{service}/" in lines


@pytest.mark.parametrize("service", SERVICES)
def test_runs_as_a_non_root_user(service: str) -> None:
    user = stages(service)[-1].last("USER")
    assert user is not None, f"{service}: no USER in the final stage"
    uid = user.value[0].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{service}: USER {user.value[0]} (numeric, non-zero: runAsNonRoot)"
    # The uid the manifests assume (runAsUser) is the image's.
    from tests.deploy.manifests import deployments

    for name, d in deployments("prod").items():
        image = d["spec"]["template"]["spec"]["containers"][0]["image"]
        if f"tributary-{service}" in image:
            assert d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == int(uid), name


@pytest.mark.parametrize("service", SERVICES)
def test_healthcheck_is_python_asking_healthz_on_the_service_port(service: str) -> None:
    runtime = stages(service)[-1]
    argv = healthcheck_argv(service)
    assert argv[:2] == ["python", "-c"], f"{service}: HEALTHCHECK runs {argv} (the slim image has no curl)"
    assert "/healthz" in argv[2]
    flags = dict(f.lstrip("-").split("=", 1) for f in runtime.last("HEALTHCHECK").flags)  # type: ignore[union-attr]
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)
    env = dockerfile_env(runtime)
    port = int(env["TRIBUTARY_HTTP_PORT"])
    default_port = settings_class(service).model_fields["http_port"].default
    assert port == default_port, f"{service}: image port {port}, settings default {default_port}"
    assert f"'{port}'" in argv[2], f"{service}: the HEALTHCHECK's fallback port is {port}"
    exposed = runtime.last("EXPOSE")
    assert exposed is not None and exposed.value[0] == str(port)


@pytest.mark.parametrize("service", SERVICES)
def test_exec_form_entrypoint_is_the_console_script_and_cmd_a_subcommand(service: str) -> None:
    runtime = stages(service)[-1]
    assert entrypoint_argv(service) == [console_script(service)]
    cmd = runtime.last("CMD")
    assert cmd is not None and cmd.json, f"{service}: CMD must be exec form"
    assert list(cmd.value) == ["serve"]
    assert "serve" in cli_subcommands(service)
    stop = runtime.last("STOPSIGNAL")
    assert stop is None or stop.value[0] == "SIGTERM"


@pytest.mark.parametrize("service", SERVICES)
def test_image_env_names_are_settings_fields(service: str) -> None:
    env = dockerfile_env(stages(service)[-1])
    names = env_names(settings_class(service))
    for name in env:
        if name.startswith("TRIBUTARY_"):
            assert name in names, f"{service}.Dockerfile sets {name}, which {settings_class(service).__name__} lacks"
    # Inside a container the service must listen on every interface, not the loopback default.
    assert env["TRIBUTARY_HTTP_HOST"] == "0.0.0.0"


def test_dockerfiles_use_no_other_service() -> None:
    for service in SERVICES:
        text = dockerfile_path(service).read_text()
        for other in set(SERVICES) - {service}:
            assert f"services/{other}" not in text, f"{service}.Dockerfile mentions services/{other}"
    assert (ROOT / "constraints.txt").is_file()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name)] = version.strip()
    return pins


def _closure(root: str) -> set[str]:
    """The distributions `pip install <root>` brings in on this Python (3.11, Linux, like the image), read from
    the installed packages' metadata: each requirement with its extras, markers evaluated."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[tuple[str, frozenset[str]]] = set()
    names: set[str] = set()
    stack: list[tuple[str, frozenset[str]]] = [(root, frozenset())]
    while stack:
        name, extras = stack.pop()
        if (_canonical(name), extras) in seen:
            continue
        seen.add((_canonical(name), extras))
        names.add(_canonical(name))
        for spec in metadata.distribution(name).requires or []:
            req = Requirement(spec)
            if req.marker and not any(req.marker.evaluate({"extra": e}) for e in (extras or {""})):
                continue
            stack.append((req.name, frozenset(req.extras)))
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_everything_the_image_installs_is_pinned_in_constraints(service: str) -> None:
    """`pip install -c constraints.txt` pins only what constraints.txt names: anything else would float."""
    pins = _pins()
    wanted = _closure(f"tributary-{service}") | _closure("tributary-common")
    unpinned = sorted(n for n in wanted if not n.startswith("tributary-") and n not in pins)
    assert not unpinned, f"the {service} image would install {unpinned} at whatever version is newest"
    # The walk found the real dependencies, extras included (uvicorn[standard], pyjwt[crypto]).
    assert {"fastapi", "uvicorn", "pydantic", "faststream", "uvloop", "cryptography"} <= wanted

"""The Dockerfiles, parsed by BuildKit's own parser: multi-stage, a pinned slim Python 3.11 base, only this
service and libs/common installed with constraints.txt, a non-root user, a Python HEALTHCHECK, exec-form
ENTRYPOINT and CMD naming the service's console script and a real subcommand."""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

import dockerfile
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

# A pinned slim Python 3.11, by digest: a real one, or the global build ARG that must carry it.
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim(-[a-z]+)?@(sha256:[0-9a-f]{64}|\$\{PYTHON_DIGEST\})$")
LOCKS = ROOT / "deploy" / "docker" / "requirements"


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
        assert PINNED_PYTHON.match(stage.image), f"{service}: FROM {stage.image} is not python:3.11.x-slim@digest"
    if any("${PYTHON_DIGEST}" in stage.image for stage in all_stages):
        # Declared before the first FROM and without a default: a build without the digest fails, never falls
        # back to whatever the tag points at today.
        head = dockerfile.parse_file(str(dockerfile_path(service)))
        globals_ = [
            c.value[0] for c in head[: next(i for i, c in enumerate(head) if c.cmd == "FROM")] if c.cmd == "ARG"
        ]
        assert "PYTHON_DIGEST" in globals_, f"{service}: ARG PYTHON_DIGEST (no default) before the first FROM"
    runtime = all_stages[-1]
    copies_from_build = [c for c in runtime.all("COPY") if any(f.startswith("--from=") for f in c.flags)]
    assert copies_from_build, f"{service}: the runtime stage copies the built environment from the build stage"
    # The runtime stage installs nothing itself: no compilers or pip caches in the final image.
    for run in runtime.all("RUN"):
        assert "pip install" not in run.value[0], f"{service}: pip install in the runtime stage"


def _pip_commands(service: str) -> list[list[str]]:
    """Every `pip install` / `pip wheel` of the Dockerfile, as argv after `pip`."""
    found = []
    for stage in stages(service):
        for run in stage.all("RUN"):
            for part in run.value[0].split("&&"):
                words = shlex.split(part)
                for i, word in enumerate(words):
                    if word == "pip" or word.endswith("/pip"):
                        found.append(words[i + 1 :])
                        break
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_installs_only_the_hashed_lock_and_the_two_local_packages(service: str) -> None:
    copied: set[str] = set()
    for stage in stages(service):
        for c in stage.all("COPY"):
            if any(f.startswith("--from=") for f in c.flags):
                continue
            copied |= {src.rstrip("/") for src in c.value[:-1]}
    locks = {f"deploy/docker/requirements/{service}.txt", "deploy/docker/requirements/build.txt"}
    assert copied == locks | {"libs/common", f"services/{service}"}, f"{service} copies {copied}"
    commands = [c for c in _pip_commands(service) if c and c[0] in ("install", "wheel")]
    assert commands, f"{service}: no pip install"
    installed_locks = set()
    for argv in commands:
        assert "-e" not in argv and "--editable" not in argv, "not editable: the sources stay in the build stage"
        if "--no-index" in argv:
            continue  # the local folder only: nothing can come from an index
        # Anything fetched from an index is checked against the lock's hashes, and only what the lock names.
        assert "--require-hashes" in argv and "--no-deps" in argv, f"{service}: pip {' '.join(argv)}"
        assert argv.count("-r") == 1 and not [w for w in argv if w.startswith("./")], f"pip {' '.join(argv)}"
        installed_locks.add(argv[argv.index("-r") + 1])
    assert installed_locks == {f"{service}.txt", "build.txt"}
    built = [a for a in commands if a[0] == "wheel"]
    assert len(built) == 1 and {w for w in built[0] if w.startswith("./")} == {"./libs/common", f"./services/{service}"}
    assert any(c[:1] == ["check"] for c in _pip_commands(service)), f"{service}: pip check after installing"
    ignore = dockerfile_path(service).with_name(f"{service}.Dockerfile.dockerignore")
    assert ignore.is_file(), f"{ignore.name}: keep .venv, .local and other services out of the build context"
    lines = [line.strip() for line in ignore.read_text().splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == "*" and f"!services/{service}/" in lines
    assert {f"!{lock}" for lock in locks} <= set(lines), f"{ignore.name} keeps the locks out of the context"


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
    # The ops port first: it answers before the service has reached its dependencies.
    assert "os.environ.get('TRIBUTARY_OPS_PORT') or" in argv[2], f"{service}: HEALTHCHECK on the ops port"
    ops = env["TRIBUTARY_OPS_PORT"]
    exposed = runtime.last("EXPOSE")
    assert exposed is not None and list(exposed.value) == [str(port), ops]


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


def _lock(name: str) -> dict[str, tuple[str, list[str]]]:
    """`<name>.txt`: distribution -> (version, sha256 hashes), every requirement line checked for its hashes."""
    entries: dict[str, tuple[str, list[str]]] = {}
    text = (LOCKS / f"{name}.txt").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        assert not line.startswith("-"), f"{name}.txt: option line {line!r} (an index or a find-links?)"
        requirement, *options = line.split()
        assert "==" in requirement, f"{name}.txt: {requirement} is not pinned"
        hashes = [o.removeprefix("--hash=sha256:") for o in options if o.startswith("--hash=sha256:")]
        assert hashes and len(hashes) == len(options), f"{name}.txt: {requirement} without sha256 hashes"
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), f"{name}.txt: {requirement}: bad hash"
        dist, version = requirement.split("==", 1)
        entries[_canonical(dist)] = (version, hashes)
    return entries


@pytest.mark.parametrize("service", SERVICES)
def test_the_lock_has_hashes_agrees_with_constraints_and_covers_the_image(service: str) -> None:
    """`--require-hashes` installs exactly what the lock lists: it must be complete, hashed and the same
    versions the tests run with (constraints.txt)."""
    lock = _lock(service)
    pins = _pins()
    for dist, (version, _) in lock.items():
        assert dist in pins, f"{service}.txt locks {dist}, which constraints.txt does not pin"
        assert pins[dist] == version, f"{service}.txt: {dist}=={version}, constraints.txt says {pins[dist]}"
    wanted = _closure(f"tributary-{service}") | _closure("tributary-common")
    missing = sorted(n for n in wanted if not n.startswith("tributary-") and n not in lock)
    assert not missing, f"the {service} image needs {missing}, which its lock does not list (run lock.py)"
    # The walk found the real dependencies, extras included (uvicorn[standard], pyjwt[crypto]).
    assert {"fastapi", "uvicorn", "pydantic", "aio-pika", "uvloop", "cryptography"} <= wanted


def test_the_build_backend_is_locked_too() -> None:
    import tomllib

    lock = _lock("build")
    for project in [ROOT / "libs" / "common", *(ROOT / "services" / s for s in SERVICES)]:
        backend = tomllib.loads((project / "pyproject.toml").read_text())["build-system"]["requires"]
        for requirement in backend:
            assert _canonical(re.split(r"[<>=\[; ]", requirement)[0]) in lock, f"{project.name}: {requirement}"


@pytest.mark.parametrize("service", SERVICES)
def test_the_lock_inputs_are_the_pyprojects_of_today(service: str) -> None:
    """A dependency added to a pyproject.toml without running lock.py would be missing from the image."""
    spec = importlib.util.spec_from_file_location("lock", LOCKS / "lock.py")
    assert spec and spec.loader
    lock = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(lock)
    assert (LOCKS / f"{service}.in").read_text() == lock.input_text(service), "run deploy/docker/requirements/lock.py"
    assert (LOCKS / "build.in").read_text() == lock.build_input_text()


def test_the_lock_check_is_not_vacuous(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = (LOCKS / "hub.txt").read_text()
    monkeypatch.setattr(sys.modules[__name__], "LOCKS", tmp_path)
    (tmp_path / "x.txt").write_text(good)
    assert _lock("x")
    (tmp_path / "x.txt").write_text(good + "evil==1.0\n")
    with pytest.raises(AssertionError, match="without sha256"):
        _lock("x")
    (tmp_path / "x.txt").write_text("--find-links /tmp/wheels\n" + good)
    with pytest.raises(AssertionError, match="option line"):
        _lock("x")

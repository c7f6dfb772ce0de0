"""The manifests run: each Kubernetes workload is started the way its container starts it, and answers what the
manifests ask of it. Docker is not available here, so the container is emulated where it matters:

- the process is the image's exec-form ENTRYPOINT + the Deployment's `args`, run as PID 1 of a fresh PID
  namespace (`unshare`), so that SIGTERM reaches it exactly as `docker stop`/the kubelet sends it: PID 1 gets
  no default signal action, so a service that does not handle SIGTERM itself never stops, and fails here;
- its environment is the Deployment's (ConfigMaps and plain values from the rendered dev overlay), with the
  cluster addresses and Secret values swapped for the local platform's (a vhost, a database, a cache namespace
  of its own);
- readiness is asked with the image's own HEALTHCHECK command, then every probe path of the Deployment is
  asked on the port the probe names; `/readyz` must name only dependencies the NetworkPolicy lets it reach;
- SIGTERM must end it with exit status 0 within terminationGracePeriodSeconds minus the preStop sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.deploy.manifests import (
    WORKLOADS,
    container,
    container_env,
    deployments,
    entrypoint_argv,
    healthcheck_argv,
    of_kind,
    pod_labels,
    port_by_name,
    prestop_seconds,
    render,
    selects,
)
from tests.support import platform
from tributary_common.auth import mint_token

OVERLAY = "dev"  # prod verifies tokens with an OIDC provider's JWKS, which is not reachable from here
START_TIMEOUT_S = 60.0
# What a /readyz check name says the service reaches, and on which port (None: inside the process, no network).
CHECK_PORTS: dict[str, int | None] = {
    "broker": 5672,
    "rabbitmq": 5672,
    "amqp": 5672,
    "mongodb": 27017,
    "database": 27017,
    "mongo": 27017,
    "memcached": 11211,
    "cache": 11211,
    "engine": None,
}


# PID 1 of a new PID namespace (with /proc of its own); without root, inside a user namespace that maps us to it.
_UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"]
if os.geteuid() != 0:
    _UNSHARE[1:1] = ["--user", "--map-root-user"]


@dataclass
class Workload:
    name: str
    service: str
    deployment: dict[str, Any]
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    healthy: bool = False
    failure: str | None = None

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    @property
    def pid1(self) -> int:
        """The service process: the child of `unshare --fork`, PID 1 of its own namespace."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = path.read_text().split() if path.exists() else []
            if children:
                return int(children[0])
            time.sleep(0.05)
        raise AssertionError(f"{self.name}: unshare started no child")

    def healthcheck(self) -> bool:
        """The image's HEALTHCHECK, as Docker runs it inside the container (python from the image's PATH)."""
        argv = healthcheck_argv(self.service)
        argv = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        done = subprocess.run(argv, env=self.env, capture_output=True, timeout=30, check=False)
        return done.returncode == 0


def _environment(name: str, deployment: dict[str, Any], port: int, vhost_url: str, db: str, ns: str) -> dict[str, str]:
    manifest = container_env(OVERLAY, deployment)
    local = {
        "TRIBUTARY_AMQP_URL": vhost_url,
        "TRIBUTARY_MONGODB_URL": platform.mongodb_url(),
        "TRIBUTARY_JWT_SECRET": "deploy-test-secret-0123456789-0123456789",
        "TRIBUTARY_INSTANCE_ID": platform.unique(name),
        # Cluster DNS names -> the local platform.
        "TRIBUTARY_MEMCACHED_HOST": "127.0.0.1",
        "TRIBUTARY_MEMCACHED_PORT": str(platform.MEMCACHED_PORT),
        "TRIBUTARY_HTTP_HOST": "127.0.0.1",
        "TRIBUTARY_HTTP_PORT": str(port),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_CACHE_NAMESPACE": ns,
        "TRIBUTARY_LOG_JSON": "false",
    }
    unresolved = {k for k, v in manifest.items() if v is None} - set(local)
    assert not unresolved, f"{name}: no local stand-in for {unresolved} (taken from a Secret or the downward API)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUTARY_", "OTEL_"))}
    env.update({k: v for k, v in manifest.items() if v is not None})
    env.update({k: v for k, v in local.items() if k in manifest or k.startswith("TRIBUTARY_HTTP_")})
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)  # no collector here: spans are not exported
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="module")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Workload]]:
    """All four workloads at once, sharing one vhost, database and cache namespace, like one Kubernetes namespace."""
    platform.require_services()
    vhost = platform.unique("deploy")
    vhost_url = platform.create_vhost(vhost)
    db = platform.unique("deploy").replace("-", "_")
    ns = platform.unique("dep")
    logs = tmp_path_factory.mktemp("deploy-runtime")
    found = deployments(OVERLAY)
    started: dict[str, Workload] = {}
    try:
        for name, (service, _) in WORKLOADS.items():
            d = found[name]
            port = platform.free_port()
            env = _environment(name, d, port, vhost_url, db, ns)
            argv = [Path(sys.executable).parent / entrypoint_argv(service)[0], *container(d).get("args", [])]
            log = logs / f"{name}.log"
            proc = subprocess.Popen(
                [*_UNSHARE, *map(str, argv)],
                env=env,
                stdout=log.open("ab"),
                stderr=subprocess.STDOUT,
                cwd=logs,
            )
            started[name] = Workload(name, service, d, port, proc, log, env)
        yield started
    finally:
        for w in started.values():
            if w.proc.poll() is None:
                w.proc.kill()  # --kill-child takes the service down with it
                w.proc.wait(10)
        platform.delete_vhost(vhost)
        import pymongo

        client: pymongo.MongoClient[dict[str, object]]
        with pymongo.MongoClient(platform.mongodb_url(), serverSelectionTimeoutMS=5000) as client:
            client.drop_database(db)


def _wait_healthy(w: Workload) -> None:
    """Until the image's HEALTHCHECK passes; a workload that never got there fails every later test at once."""
    if w.failure is None and not w.healthy:
        w.failure = _first_health(w)
        w.healthy = w.failure is None
    if w.failure is not None:
        pytest.fail(w.failure)


def _first_health(w: Workload) -> str | None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if w.proc.poll() is not None:
            return f"{w.name} exited with {w.proc.returncode} before answering:\n{w.tail()}"
        if w.healthcheck():
            return None
        time.sleep(0.3)
    return (
        f"{w.name} (`{' '.join(entrypoint_argv(w.service))} {' '.join(container(w.deployment).get('args', []))}`) "
        f"never passed the image's HEALTHCHECK (GET /healthz on TRIBUTARY_HTTP_PORT={w.port}) within "
        f"{START_TIMEOUT_S:.0f} s, yet its Deployment probes that port:\n{w.tail()}"
    )


def _get_until_ok(url: str, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        try:
            last = httpx.get(url, timeout=5)
            if last.status_code == 200:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"GET {url} never answered 200; last: {last and (last.status_code, last.text[:500])}")


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_probes_answer_on_the_probed_port(workloads: dict[str, Workload], name: str) -> None:
    w = workloads[name]
    _wait_healthy(w)
    c = container(w.deployment)
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = c[probe]["httpGet"]
        # Locally the service listens on a free port; in the pod, on the probe's port. The settings say which.
        manifest_port = container_env(OVERLAY, w.deployment).get("TRIBUTARY_HTTP_PORT")
        assert manifest_port is not None and int(manifest_port) == port_by_name(w.deployment, get["port"]), (
            f"{name}: {probe} asks port {get['port']}, the service listens on TRIBUTARY_HTTP_PORT={manifest_port}"
        )
        _get_until_ok(f"http://127.0.0.1:{w.port}{get['path']}", 60)
    metrics = _get_until_ok(f"http://127.0.0.1:{w.port}/metrics", 10)
    assert "# TYPE" in metrics.text, f"{name}: /metrics is not Prometheus text"


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_readiness_checks_only_what_the_network_policy_allows(workloads: dict[str, Workload], name: str) -> None:
    w = workloads[name]
    _wait_healthy(w)
    body = _get_until_ok(f"http://127.0.0.1:{w.port}/readyz", 60).json()
    checks = set(body.get("checks", {}))
    assert checks, f"{name}: /readyz checks nothing: {body}"
    unknown = checks - set(CHECK_PORTS)
    assert not unknown, f"{name}: /readyz checks {unknown}; tests/deploy/test_runtime.py must learn their ports"
    docs = render(OVERLAY)
    labels = pod_labels(w.deployment)
    allowed = {
        int(p["port"])
        for pol in of_kind(docs, "NetworkPolicy").values()
        if selects(pol["spec"]["podSelector"], labels)
        for rule in pol["spec"].get("egress", [])
        for p in rule.get("ports", [])
    }
    for check in checks:
        assert CHECK_PORTS[check] is None or CHECK_PORTS[check] in allowed, (
            f"{name}: /readyz needs {check} (:{CHECK_PORTS[check]}), denied by policy"
        )


async def _close_code(ws: websockets.ClientConnection, timeout: float) -> int | None:
    """Read (and drop) frames until the server closes the socket; its close code."""
    try:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)
    except websockets.ConnectionClosed:
        return ws.close_code


@pytest.mark.parametrize("name", list(WORKLOADS))
async def test_sigterm_to_pid_1_drains_and_exits_0_within_the_grace_period(
    workloads: dict[str, Workload], name: str
) -> None:
    w = workloads[name]
    await asyncio.to_thread(_wait_healthy, w)
    spec = w.deployment["spec"]["template"]["spec"]
    budget = spec["terminationGracePeriodSeconds"] - prestop_seconds(w.deployment)
    ws = None
    if name == "tributary-stream":
        # A connected client: the drain must close its socket with 1012 (reconnect) before the process ends.
        token = mint_token(w.env["TRIBUTARY_JWT_SECRET"], subject="deploy-test")
        ws = await websockets.connect(
            f"ws://127.0.0.1:{w.port}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
        )
        await ws.send(json.dumps({"op": "ping", "id": "p1"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "pong"
    os.kill(w.pid1, signal.SIGTERM)
    if ws is not None:
        code = await _close_code(ws, budget)
        assert code == 1012, f"the stream closed the websocket with {code}, not 1012"
    try:
        code = await asyncio.to_thread(w.proc.wait, budget)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{name} still runs {budget:.0f} s after SIGTERM as PID 1 (the kubelet would SIGKILL it):\n{w.tail()}"
        )
    assert code == 0, f"{name} exited with {code} on SIGTERM:\n{w.tail()}"
    assert "Traceback" not in w.log.read_text(errors="replace"), f"{name} logged a traceback:\n{w.tail()}"
    assert not await asyncio.to_thread(w.healthcheck), f"{name}: the HEALTHCHECK still passes after the process is gone"

"""The manifests run: each Kubernetes workload is started the way its container starts it, and answers what the
manifests ask of it. Docker is not available here, so the container is emulated where it matters:

- the process is the image's exec-form ENTRYPOINT + the Deployment's `args`, run as PID 1 of a fresh PID
  namespace (`unshare`), so that SIGTERM reaches it exactly as `docker stop`/the kubelet sends it: PID 1 gets
  no default signal action, so a service that does not handle SIGTERM itself never stops, and fails here;
- its environment is the Deployment's (ConfigMaps and plain values from the rendered dev overlay), with the
  cluster addresses and Secret values swapped for the local platform's (a vhost, a database, a cache namespace
  of its own);
- readiness is asked with the image's own HEALTHCHECK command, then every probe path of the Deployment is
  asked on the port the probe names (the ops port), and the service's own port serves none of them;
  `/readyz` must name only dependencies the NetworkPolicy lets it reach;
- health answers before the dependencies do: the hub and the recorder, started while their database is down,
  answer `/healthz` and report not ready, become ready when it comes up, and the hub API stays ready when it
  goes away again (a 503 per request instead), with Memcached unreachable all along;
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
from tests.deploy.test_scaling import CONNECTION_KIB
from tests.support import platform
from tests.support.ferretdb import PrivateFerretDB
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
    "started": None,  # start() done (it reached the database and the broker then)
    "recorders": None,
}
OPERATIONAL = ("/healthz", "/readyz", "/metrics")


# PID 1 of a new PID namespace (with /proc of its own); without root, inside a user namespace that maps us to it.
_UNSHARE = ["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"]
if os.geteuid() != 0:
    _UNSHARE[1:1] = ["--user", "--map-root-user"]


@dataclass
class Workload:
    name: str
    service: str
    deployment: dict[str, Any]
    port: int  # the service's own port (unused by the recorder)
    ops: int  # /healthz, /readyz, /metrics
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


def _environment(
    name: str, deployment: dict[str, Any], ports: tuple[int, int], vhost_url: str, db: str, ns: str
) -> dict[str, str]:
    manifest = container_env(OVERLAY, deployment)
    port, ops = ports
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
        "TRIBUTARY_OPS_PORT": str(ops),
        "TRIBUTARY_MONGODB_DB": db,
        "TRIBUTARY_CACHE_NAMESPACE": ns,
        "TRIBUTARY_LOG_JSON": "false",
    }
    unresolved = {k for k, v in manifest.items() if v is None} - set(local)
    assert not unresolved, f"{name}: no local stand-in for {unresolved} (taken from a Secret or the downward API)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIBUTARY_", "OTEL_"))}
    env.update({k: v for k, v in manifest.items() if v is not None})
    env.update({k: v for k, v in local.items() if k in manifest or k.startswith(("TRIBUTARY_HTTP_", "TRIBUTARY_OPS_"))})
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
        for name in WORKLOADS:
            env = _environment(name, found[name], _ports(), vhost_url, db, ns)
            started[name] = _launch(name, found[name], env, logs)
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


def _ports() -> tuple[int, int]:
    return platform.free_port(), platform.free_port()


def _launch(name: str, deployment: dict[str, Any], env: dict[str, str], logs: Path) -> Workload:
    """The image's entry point with the Deployment's args, as PID 1 of its own PID namespace."""
    service, _ = WORKLOADS[name]
    argv = [Path(sys.executable).parent / entrypoint_argv(service)[0], *container(deployment).get("args", [])]
    log = logs / f"{name}.log"
    proc = subprocess.Popen(
        [*_UNSHARE, *map(str, argv)], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=logs
    )
    port, ops = int(env["TRIBUTARY_HTTP_PORT"]), int(env["TRIBUTARY_OPS_PORT"])
    return Workload(name, service, deployment, port, ops, proc, log, env)


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
        f"never passed the image's HEALTHCHECK (GET /healthz on TRIBUTARY_OPS_PORT={w.ops}) within "
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
        # Locally the service listens on free ports; in the pod, on the probe's port. The settings say which.
        manifest_port = container_env(OVERLAY, w.deployment).get("TRIBUTARY_OPS_PORT")
        assert manifest_port is not None and int(manifest_port) == port_by_name(w.deployment, get["port"]), (
            f"{name}: {probe} asks port {get['port']}, the service serves health on TRIBUTARY_OPS_PORT={manifest_port}"
        )
        _get_until_ok(f"http://127.0.0.1:{w.ops}{get['path']}", 60)
    metrics = _get_until_ok(f"http://127.0.0.1:{w.ops}/metrics", 10)
    assert "# TYPE" in metrics.text, f"{name}: /metrics is not Prometheus text"
    if name != "tributary-recorder":  # the others have a port of their own, which the Ingress may route
        for path in OPERATIONAL:
            got = httpx.get(f"http://127.0.0.1:{w.port}{path}", timeout=5)
            assert got.status_code == 404, f"{name}: {path} answers {got.status_code} on the service's own port"


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_readiness_checks_only_what_the_network_policy_allows(workloads: dict[str, Workload], name: str) -> None:
    w = workloads[name]
    _wait_healthy(w)
    body = _get_until_ok(f"http://127.0.0.1:{w.ops}/readyz", 60).json()
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


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


async def test_a_stream_connection_costs_what_its_memory_budget_assumes(workloads: dict[str, Workload]) -> None:
    """TRIBUTARY_MAX_CONNECTIONS is derived from the memory limit and a per-connection budget (test_scaling):
    measure the stream workload with its manifest settings, so that the budget cannot silently become a lie."""
    w = workloads["tributary-stream"]
    await asyncio.to_thread(_wait_healthy, w)
    n, subscriptions = 300, 10
    secret = w.env["TRIBUTARY_JWT_SECRET"]

    async def open_one(i: int) -> websockets.ClientConnection:
        token = mint_token(secret, subject=f"memory-{i}")  # one principal each: the per-principal cap is apart
        ws = await websockets.connect(
            f"ws://127.0.0.1:{w.port}/ws", additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=30
        )
        for k in range(subscriptions):
            await ws.send(json.dumps({"op": "subscribe", "id": f"s{k}", "events": {"pattern": f"mem{i}.k{k}.#"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "subscribed"
        return ws

    warm = [await open_one(-1 - i) for i in range(5)]  # first-use allocations are no per-connection cost
    await asyncio.sleep(1.0)
    before = _rss_kib(w.pid1)
    sockets: list[websockets.ClientConnection] = []
    for start in range(0, n, 50):
        sockets += await asyncio.gather(*(open_one(i) for i in range(start, min(n, start + 50))))
    await asyncio.sleep(1.0)
    per_connection = (_rss_kib(w.pid1) - before) / n
    await asyncio.gather(*(ws.close() for ws in sockets + warm), return_exceptions=True)
    assert per_connection <= CONNECTION_KIB, (
        f"a connection with {subscriptions} subscriptions costs {per_connection:.0f} KiB, over the {CONNECTION_KIB} KiB "
        "that TRIBUTARY_MAX_CONNECTIONS is derived from: lower the connections or raise the memory limit"
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


# --- health before dependencies (a database away at start, Memcached away all along) -------------------------


def _status(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=3).status_code
    except httpx.HTTPError:
        return None


def _wait_status(url: str, wanted: int, timeout: float, w: Workload) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: httpx.Response | None = None
    while time.monotonic() < deadline:
        assert w.proc.poll() is None, f"{w.name} exited with {w.proc.returncode}:\n{w.tail()}"
        try:
            last = httpx.get(url, timeout=3)
            if last.status_code == wanted:
                return last
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(
        f"GET {url} never answered {wanted}; last {last and (last.status_code, last.text)}:\n{w.tail()}"
    )


@pytest.fixture
def database_late(tmp_path: Path) -> Iterator[tuple[PrivateFerretDB, dict[str, str], Path]]:
    """A private database that is not started yet, a vhost, and a Memcached port where nothing listens."""
    platform.require_services()
    db = PrivateFerretDB(tmp_path / "ferret")
    vhost = platform.unique("deploy-late")
    overrides = {
        "TRIBUTARY_AMQP_URL": platform.create_vhost(vhost),
        "TRIBUTARY_MONGODB_URL": db.url,
        "TRIBUTARY_MEMCACHED_PORT": str(platform.free_port()),  # nothing listens: the hub must not care
    }
    try:
        yield db, overrides, tmp_path
    finally:
        db.stop()
        platform.delete_vhost(vhost)


def _start_alone(name: str, overrides: dict[str, str], logs: Path) -> Workload:
    d = deployments(OVERLAY)[name]
    env = _environment(name, d, _ports(), overrides["TRIBUTARY_AMQP_URL"], "deploy_late", platform.unique("late"))
    env.update(overrides)
    return _launch(name, d, env, logs)


def test_the_hub_answers_health_before_its_database_and_stays_ready_without_it(
    database_late: tuple[PrivateFerretDB, dict[str, str], Path],
) -> None:
    db, overrides, logs = database_late
    w = _start_alone("tributary-hub", overrides, logs)
    ops = f"http://127.0.0.1:{w.ops}"
    try:
        # Alive (the startup and liveness probes pass) while the database cannot be reached: not killed.
        _wait_status(f"{ops}/healthz", 200, 20, w)
        assert w.healthcheck(), "the image's HEALTHCHECK fails while the hub waits for its database"
        ready = _wait_status(f"{ops}/readyz", 503, 5, w)
        assert ready.json()["checks"]["started"] == "failed"
        time.sleep(3)  # still waiting, still alive, still not ready
        assert _status(f"{ops}/healthz") == 200 and _status(f"{ops}/readyz") == 503
        db.start()
        body = _wait_status(f"{ops}/readyz", 200, 30, w).json()
        # Ready on what the API cannot serve without; Memcached (unreachable here) and MongoDB are not in it.
        assert set(body["checks"]) == {"started", "broker"}, body
        token = mint_token(w.env["TRIBUTARY_JWT_SECRET"], subject="deploy-test")
        api = httpx.Client(base_url=f"http://127.0.0.1:{w.port}", headers={"Authorization": f"Bearer {token}"})
        created = api.post("/topics", json={"name": "deploy-late", "schema": {"type": "object"}}, timeout=10)
        assert created.status_code in (200, 201), created.text
        # The database goes away (a restart, an election): every pod stays in the Service, publishing goes on
        # from the broker and the in-process topic cache; what needs the database gets a 503 of its own.
        db.stop()
        for _ in range(3):
            time.sleep(1)
            assert _status(f"{ops}/readyz") == 200, "the hub went unready because its database is away"
        reads = api.get("/topics", timeout=30)
        assert reads.status_code == 503, (reads.status_code, reads.text)
        api.close()
    finally:
        w.proc.kill()
        w.proc.wait(10)


def test_the_recorder_answers_health_before_its_database_and_stops_cleanly_while_waiting(
    database_late: tuple[PrivateFerretDB, dict[str, str], Path],
) -> None:
    _, overrides, logs = database_late
    w = _start_alone("tributary-recorder", overrides, logs)
    ops = f"http://127.0.0.1:{w.ops}"
    try:
        _wait_status(f"{ops}/healthz", 200, 20, w)
        assert w.healthcheck()
        body = _wait_status(f"{ops}/readyz", 503, 5, w).json()
        assert body["checks"]["started"] == "failed" and body["checks"]["mongodb"] == "failed", body
        # SIGTERM while it waits: it gives the start up and exits 0, well within the grace period.
        os.kill(w.pid1, signal.SIGTERM)
        assert w.proc.wait(15) == 0, w.tail()
        assert "Traceback" not in w.log.read_text(errors="replace"), w.tail()
    finally:
        if w.proc.poll() is None:
            w.proc.kill()
            w.proc.wait(10)

"""The ingest process on its own: health while the broker is unreachable, and a clear exit on bad configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx

from tests.support import platform
from tests.support.polling import wait_for
from tests.support.processes import ROOT, ServiceProcess


def test_healthz_up_readyz_names_the_broker_while_it_is_unreachable(tmp_path: Path, cache_namespace: str) -> None:
    port = platform.free_port()
    dead = f"amqp://guest:guest@127.0.0.1:{platform.free_port()}/"
    env = {"TRIBUTARY_AMQP_URL": dead, "TRIBUTARY_CACHE_NAMESPACE": cache_namespace, "TRIBUTARY_HTTP_PORT": str(port)}
    proc = ServiceProcess("tributary_ingest", ["serve"], env, tmp_path / "ingest.log", port).start()
    try:
        ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10)
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks["engine"].startswith("failed") and checks["broker"].startswith("failed")
        assert checks["memcached"] == "ok"
        wait_for(lambda: "broker not reachable" in proc.log_path.read_text(), 30, what="the retry logged")
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    finally:
        assert proc.terminate() == 0, proc.tail()


def test_unknown_enabled_source_exits_with_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tributary_ingest", "serve"],
        env={"PATH": "/usr/bin:/bin", "TRIBUTARY_ENABLED_SOURCES": "simulator,nope", "TRIBUTARY_LOG_JSON": "false"},
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "enabled sources ['nope'] are not registered" in result.stderr.decode()

"""Startup: seconds from `python -m tributary_<service> serve` to its `/readyz` answering 200, with RabbitMQ,
FerretDB and Memcached already answering (goal: ≤ 2 s each), and the time to import each service's package alone.

Baseline in the same run: a minimal FastAPI app under uvicorn (bench/baselines/hello_app.py) from process start to
its first 200. Each case runs RUNS times; the median is printed. `.venv/bin/python bench/startup.py` (~1 minute).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.support.ratios import record  # noqa: E402
from tests.support import platform  # noqa: E402
from tests.support.processes import ServiceProcess  # noqa: E402

SECRET = "bench-secret-0123456789-0123456789-abcdef"
RUNS = 3
MODULES = {"hub": "tributary_hub", "ingest": "tributary_ingest", "stream": "tributary_stream"}


def until_ready(port: int, alive: Callable[[], bool], path: str = "/readyz", timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the process exited before it was ready")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    raise TimeoutError(f"not ready on :{port} after {timeout} s")


def service_ready_s(name: str, env: dict[str, str], logs: Path) -> float:
    port = platform.free_port()
    proc = ServiceProcess(
        MODULES[name], ["serve"], {**env, "TRIBUTARY_HTTP_PORT": str(port)}, logs / f"{name}.log", port
    )
    t0 = time.perf_counter()
    proc.start(wait=False)
    try:
        until_ready(port, lambda: proc.proc is not None and proc.proc.poll() is None)
        return time.perf_counter() - t0
    finally:
        proc.terminate()


def baseline_ready_s() -> float:
    port = platform.free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench/baselines/hello_app.py"), str(port)])
    try:
        until_ready(port, lambda: proc.poll() is None, path="/")
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(10)


def import_s(module: str) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", f"import {module}.app" if module != "tributary_ingest" else f"import {module}.engine"],
        check=True,
    )
    return time.perf_counter() - t0


def main() -> None:
    platform.require_services()
    logs = Path(tempfile.mkdtemp())
    with platform.isolated_env("bench-start", SECRET) as isolated:
        env = {**isolated, "TRIBUTARY_LOG_LEVEL": "WARNING"}
        base = statistics.median(baseline_ready_s() for _ in range(RUNS))
        rows = []
        for name, module in MODULES.items():
            ready = statistics.median(service_ready_s(name, env, logs) for _ in range(RUNS))
            imported = statistics.median(import_s(module) for _ in range(RUNS))
            rows.append((name, ready, imported))
    print(f"startup to /readyz, median of {RUNS} (dependencies already answering; goal ≤ 2 s)")
    print(f"{'process':<10} {'ready s':>8} {'import s':>9} {'/baseline':>10}")
    print(f"{'baseline':<10} {base:>8.2f} {'':>9} {1.0:>10.2f}")
    for name, ready, imported in rows:
        print(f"{name:<10} {ready:>8.2f} {imported:>9.2f} {ready / base:>10.2f}")
        record("startup.py", f"{name} ready to /readyz", ready, "s", None, "<= 2")


if __name__ == "__main__":
    main()

"""Start Tributary services as real processes for multi-process tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def log_tail(path: Path, lines: int) -> str:
    """The last `lines` of a process's log ("" before it has one)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


class ServiceProcess:
    """`python -m <module> <args>` with `env` added to the environment; output goes to `log_path`."""

    def __init__(self, module: str, args: list[str], env: dict[str, str], log_path: Path, port: int | None) -> None:
        self.module = module
        self.args = args
        self.env = env
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True, timeout: float = 30) -> ServiceProcess:
        env = {**os.environ, "TRIBUTARY_LOG_JSON": "false", **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *self.args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT
        )
        if wait and self.port:
            self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30, path: str = "/healthz") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.module} not healthy on {self.port}{path} within {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def task_dump(self, wait_s: float = 3.0) -> str:
        """Where each asyncio task of the running process waits (SIGUSR1, tributary_common.task_dump), from its log:
        for the diagnosis of a test that found it stuck."""
        if self.proc is None or self.proc.poll() is not None:
            return f"{self.module}: not running"
        start = self.log_path.stat().st_size
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if "task dump (SIGUSR1)" in self._log_from(start):
                time.sleep(0.2)  # the rest of the record
                text = self._log_from(start)
                return text[text.find("task dump (SIGUSR1)") :][:20_000]
            time.sleep(0.1)
        return f"{self.module}: no task dump within {wait_s} s (its event loop is blocked?)"

    def _log_from(self, offset: int) -> str:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def terminate(self, timeout: float = 15) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_all(procs: list[ServiceProcess], timeout: float = 60) -> None:
    """Start every process at once (they boot side by side), then wait until each is alive and ready."""
    for p in procs:
        p.start(wait=False)
    for p in procs:
        p.wait_healthy(timeout)
        p.wait_healthy(timeout, path="/readyz")

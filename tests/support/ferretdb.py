"""A private FerretDB process for tests that stop and restart the database."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from .platform import free_port, port_open
from .processes import log_tail

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("TRIBUTARY_LOCAL_DIR", ROOT / ".local")) / "bin" / "ferretdb-local"


class PrivateFerretDB:
    def __init__(
        self, data_dir: Path, port: int | None = None, handler: str = "sqlite", postgresql_url: str = ""
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.backend = ["-handler", handler, "-postgresql-url", postgresql_url] if handler != "sqlite" else []
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / f"ferretdb-{self.port}.log"  # every start appends

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    def start(self) -> None:
        if not BINARY.exists():
            raise RuntimeError(f"{BINARY} missing: run `make services` to build FerretDB")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BINARY), "-listen", f"127.0.0.1:{self.port}", "-data", str(self.data_dir), *self.backend],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("private FerretDB did not start")
            time.sleep(0.05)

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

"""A private Memcached for tests that stop and restart it (the shared one on 11211 is never touched)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .platform import free_port
from .processes import ROOT


@dataclass
class PrivateMemcached:
    port: int

    def run(self, action: str) -> None:
        """`up` (waits until it answers) or `down` (its own pid file only), through the local platform's script."""
        script = str(ROOT / "deploy/local/services.sh")
        env = {**os.environ, "MEMCACHED_PORT": str(self.port)}
        subprocess.run([script, action, "memcached"], env=env, check=True, capture_output=True, timeout=60)


@contextmanager
def private_memcached() -> Iterator[PrivateMemcached]:
    """A memcached on a free port, started, and stopped afterwards."""
    node = PrivateMemcached(free_port())
    try:
        node.run("up")
        yield node
    finally:
        node.run("down")

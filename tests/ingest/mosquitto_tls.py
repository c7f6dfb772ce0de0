"""A Mosquitto started by the test on its own port: TLS (test CA, server certificate for `broker.test`, client
certificates required) and a password file; its connection log tells how many clients connected."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt

from tests.support import platform
from tests.support.certs import Pem, TestCA
from tests.support.polling import wait_for

SERVER_NAME = "broker.test"
USER, PASSWORD = "operator", "pa55-word"


@dataclass
class Broker:
    port: int
    folder: Path
    ca: TestCA
    client: Pem
    log: Path
    conf: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        before = self.log.read_text().count("Opening ipv4 listen socket") if self.log.exists() else 0
        self.proc = subprocess.Popen([exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc
        wait_for(
            lambda: (
                proc.poll() is None
                and self.log.exists()
                and self.log.read_text().count("Opening ipv4 listen socket") > before
            ),
            timeout=10,
            what="mosquitto listening",
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def connections(self, prefix: str) -> int:
        """Clients with an id starting with `prefix` that the broker accepted (CONNACK success)."""
        text = self.log.read_text(errors="replace")
        return len(re.findall(rf"New client connected from \S+ as {re.escape(prefix)}", text))

    def subscribed_qos(self, topic: str) -> list[int]:
        text = self.log.read_text(errors="replace")
        return [int(q) for q in re.findall(rf"^\d+: \s*{re.escape(topic)} \(QoS (\d)\)", text, re.M)]

    def tls_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.folder / "ca.pem"))
        ctx.load_cert_chain(self.folder / "client.pem", self.folder / "client.key")
        ctx.check_hostname = False  # the test's own publisher connects to 127.0.0.1
        return ctx

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[aiomqtt.Client]:
        async with aiomqtt.Client(
            "127.0.0.1",
            self.port,
            identifier="test-publisher",
            username=USER,
            password=PASSWORD,
            tls_context=self.tls_context(),
        ) as client:
            yield client


@contextlib.contextmanager
def mosquitto(folder: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        raise RuntimeError("mosquitto is not installed (deploy/local/services.sh up mosquitto installs it)")
    folder.mkdir(parents=True, exist_ok=True)
    ca = TestCA()
    server = ca.issue(SERVER_NAME, dns=(SERVER_NAME,), server=True, client=False)
    client = ca.issue("tributary-ingest", server=False, client=True)
    (folder / "ca.pem").write_bytes(ca.pem)
    (folder / "server.pem").write_bytes(server.cert)
    (folder / "server.key").write_bytes(server.key)
    (folder / "client.pem").write_bytes(client.cert)
    (folder / "client.key").write_bytes(client.key)
    passwd = folder / "passwd"
    passwd.touch(mode=0o600)
    subprocess.run(["mosquitto_passwd", "-b", str(passwd), USER, PASSWORD], check=True, capture_output=True)
    port = platform.free_port()
    log = folder / "mosquitto.log"
    conf = folder / "mosquitto.conf"
    lines = [
        f"listener {port} 127.0.0.1",
        f"cafile {folder / 'ca.pem'}",
        f"certfile {folder / 'server.pem'}",
        f"keyfile {folder / 'server.key'}",
        "require_certificate true",
        "tls_version tlsv1.2",
        "allow_anonymous false",
        f"password_file {passwd}",
        "persistence false",
        f"log_dest file {log}",
        "log_type all",
        "connection_messages true",
    ]
    if os.getuid() == 0:
        lines.append("user root")
    conf.write_text("\n".join(lines) + "\n")
    broker = Broker(port, folder, ca, client, log, conf)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def publish_until(check: object, publish: object, what: str, every_s: float = 0.1, tries: int = 300) -> None:
    """Publish until `check()` holds (messages sent before a subscription exists are lost)."""
    for i in range(tries):
        if check():  # type: ignore[operator]
            return
        await publish(i)  # type: ignore[operator]
        await asyncio.sleep(every_s)
    raise AssertionError(f"no {what} after {tries} messages")

# asyncua's annotations name its own wire types (Int16, String, DateTime …) where plain values work.
# mypy: disable-error-code="arg-type,attr-defined"
"""An asyncua server in the test's own loop: a namespace of changing variables, history on the counter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole

from tests.support.certs import Pem

URI = "urn:tributary:test"
for noisy in ("asyncua", "asyncua.server", "asyncua.client"):
    logging.getLogger(noisy).setLevel(logging.WARNING)


class Users:
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if self.users.get(username or "") == password:
            return User(role=UserRole.User)
        return None


@dataclass
class Plant:
    server: Server
    endpoint: str
    counter: Any = None
    level: Any = None
    noisy: Any = None
    sensor: Any = None
    written: list[tuple[Any, int]] = field(default_factory=list)  # (source time, counter value)
    task: asyncio.Task[None] | None = None


@contextlib.asynccontextmanager
async def plant(
    port: int,
    *,
    start: int = 0,
    history: bool = False,
    cert: Pem | None = None,
    users: dict[str, str] | None = None,
    secure_only: bool = False,
    period_s: float = 0.1,
) -> AsyncIterator[Plant]:
    server = Server(user_manager=Users(users) if users else None)
    await server.init()
    endpoint = f"opc.tcp://127.0.0.1:{port}/tributary/"
    server.set_endpoint(endpoint)
    await server.set_application_uri(URI)
    policies = [
        ua.SecurityPolicyType.Basic256Sha256_Sign,
        ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt,
    ]
    if not secure_only:
        policies.insert(0, ua.SecurityPolicyType.NoSecurity)
    server.set_security_policy(policies)
    if users:
        server.set_identity_tokens([ua.UserNameIdentityToken])
    if cert is not None:
        await server.load_certificate(cert.cert, format="pem")
        await server.load_private_key(cert.key, format="pem")
    idx = await server.register_namespace(URI)
    objects = server.nodes.objects
    line = await objects.add_object(ua.NodeId("Line1", idx), ua.QualifiedName("Line1", idx))
    p = Plant(server, endpoint)
    p.counter = await line.add_variable(
        ua.NodeId("Line1.Counter", idx), "Counter", ua.Variant(start, ua.VariantType.Int64)
    )
    p.level = await line.add_variable(ua.NodeId("Line1.Level", idx), "Level", 0.0)
    p.noisy = await line.add_variable(ua.NodeId("Line1.Noisy", idx), "Noisy", 0.0)
    p.sensor = await line.add_variable(ua.NodeId("Line1.Sensor", idx), "Sensor", 1.0)
    async with server:
        if history:
            await server.historize_node_data_change(p.counter, period=timedelta(hours=1), count=0)

        async def run() -> None:
            i = start
            while True:
                i += 1
                now = datetime.now(UTC)
                dv = ua.DataValue(ua.Variant(i, ua.VariantType.Int64), SourceTimestamp=now, ServerTimestamp=now)
                await p.counter.write_value(dv)
                p.written.append((i, i))
                await p.level.write_value(float(i % 50))
                # Noise of +-1 around a step every 20 values: a deadband of 5 sees only the steps.
                await p.noisy.write_value(float(100 * (i // 20) + (i % 2)))
                if i % 10 == 0:
                    bad = ua.DataValue(ua.Variant(0.0), StatusCode=ua.StatusCode(ua.StatusCodes.BadSensorFailure))
                    await p.sensor.write_value(bad)
                elif i % 10 == 5:
                    await p.sensor.write_value(float(i))
                await asyncio.sleep(period_s)

        p.task = asyncio.create_task(run())
        try:
            yield p
        finally:
            p.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await p.task

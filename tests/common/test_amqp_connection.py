"""Several AMQP URLs: the connection goes to a node that answers, and a robust one that loses its node carries on
through the next (two TCP relays to the shared broker stand for two nodes; the cluster test does it for real)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from pydantic import ValidationError
from yarl import URL

from tests.support import platform
from tests.support.polling import eventually
from tributary_common.amqp import QueueSpec, connect
from tributary_common.amqp import connection as amqp_connection
from tributary_common.settings import CommonSettings


class Relay:
    """A TCP relay to the broker that can be cut: its listener and every connection through it closed."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(platform.RABBIT_HOST, platform.RABBIT_PORT)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:
            writer.close()
        await self.server.wait_closed()


@pytest.fixture
async def relays() -> AsyncIterator[tuple[Relay, Relay]]:
    pair = (Relay(), Relay())
    for relay in pair:
        await relay.start()
    yield pair
    for relay in pair:
        with contextlib.suppress(Exception):
            await relay.cut()


def _via(amqp_url: str, port: int) -> str:
    return str(URL(amqp_url).with_port(port))


def test_parse_urls() -> None:
    one = "amqp://guest:guest@127.0.0.1:5672/"
    assert amqp_connection.parse_urls(one) == [one]
    assert amqp_connection.parse_urls(f" {one} , amqps://u:p@rabbit-1:5671/v ,") == [one, "amqps://u:p@rabbit-1:5671/v"]
    for bad in ("", " , ", "http://rabbit/", "rabbit:5672", "amqp:///vhost"):
        with pytest.raises(ValueError, match="AMQP URL"):
            amqp_connection.parse_urls(bad)
    with pytest.raises(ValueError, match="not an AMQP URL") as caught:
        amqp_connection.parse_urls(f"{one},http://user:s3cret@rabbit/")
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize("robust", [True, False])
async def test_a_dead_node_in_the_list_is_passed_over(amqp_url: str, robust: bool) -> None:
    dead = _via(amqp_url, platform.free_port())
    for _ in range(3):  # whichever node the rotation starts at
        connection = await connect(f"{dead},{amqp_url}", name="test-two-nodes", robust=robust, timeout_s=2)
        assert not connection.is_closed
        await connection.close()


async def test_no_node_answering_raises(amqp_url: str) -> None:
    dead = ",".join(_via(amqp_url, platform.free_port()) for _ in range(2))
    with pytest.raises((ConnectionError, OSError)):
        await connect(dead, name="test-no-node", timeout_s=2)


async def test_a_robust_connection_that_loses_its_node_goes_on_through_the_next(
    amqp_url: str, relays: tuple[Relay, Relay]
) -> None:
    urls = ",".join(_via(amqp_url, r.port) for r in relays)
    connection = await connect(urls, name="test-failover")
    assert isinstance(connection, amqp_connection.MultiNodeConnection)
    first = next(r for r in relays if r.port == connection.url.port)
    got: list[bytes] = []

    async def on_message(message: AbstractIncomingMessage) -> None:
        got.append(message.body)
        await message.ack()

    spec = QueueSpec(platform.unique("failover"), durable=True)
    channel = await connection.channel()
    queue = await channel.declare_queue(spec.name, durable=True)
    await queue.consume(on_message)
    publisher = await connect(amqp_url, name="test-failover-publisher", robust=False)
    out = await publisher.channel()
    await out.default_exchange.publish(aio_pika.Message(b"before"), routing_key=spec.name)
    await eventually(lambda: got == [b"before"], 10.0)

    await first.cut()  # the node is gone: the connection moves to the other one, its consumer with it
    await eventually(lambda: connection.connected.is_set() and connection.url.port != first.port, 20.0)
    await out.default_exchange.publish(aio_pika.Message(b"after"), routing_key=spec.name)
    await eventually(lambda: got == [b"before", b"after"], 20.0)
    await out.queue_delete(spec.name)
    await publisher.close()
    await connection.close()


def test_a_refused_url_setting_never_echoes_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic prints a refused setting's input unless told not to: the password must not reach the log."""
    monkeypatch.setenv("TRIBUTARY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/,http://user:s3cret@rabbit/")
    with pytest.raises(ValidationError) as caught:
        CommonSettings()
    assert "amqp_url" in str(caught.value)
    assert "s3cret" not in str(caught.value)

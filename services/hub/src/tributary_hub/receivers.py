"""Where a recorder's deliveries come from: its `Consumer` on aio-pika, or a `PikaReceiver` thread (the events
recorder's default, see pika_receiver.py). Either fills an inbox in delivery order; the recorder acks each batch
once it is stored, and releases what it did not write when it stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any, Protocol, cast

from aio_pika.abc import AbstractIncomingMessage

from tributary_common.amqp import Consumer
from tributary_common.amqp.delivery import Delivery


class Receiver(Protocol):
    @property
    def inbox(self) -> asyncio.Queue[Any]: ...

    async def consume(self) -> None: ...

    async def cancel(self) -> None: ...

    async def alive(self) -> bool: ...

    async def ack(self, batch: Sequence[Delivery]) -> None: ...

    async def release(self, pending: Sequence[Delivery]) -> None: ...

    async def close(self) -> None: ...


class AioPikaReceiver:
    """The recorder's own `Consumer` (the one that declared the queue) consuming into its inbox."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    @property
    def inbox(self) -> asyncio.Queue[Any]:
        return self.consumer.inbox

    async def consume(self) -> None:
        await self.consumer.consume()

    async def cancel(self) -> None:
        await self.consumer.cancel()

    async def alive(self) -> bool:
        return await self.consumer.alive()

    async def ack(self, batch: Sequence[Delivery]) -> None:
        await ack_all(cast(Sequence[AbstractIncomingMessage], batch))  # what this consumer delivered

    async def release(self, pending: Sequence[Delivery]) -> None:
        for message in cast(Sequence[AbstractIncomingMessage], pending):
            with contextlib.suppress(Exception):
                await message.nack(requeue=True)

    async def close(self) -> None:
        """Close the consumer's channel: what it holds unacked returns to the queue (a requeued message is
        delivered to this consumer again until then)."""
        await self.consumer.close()


async def ack_all(batch: Sequence[AbstractIncomingMessage]) -> None:
    """One `ack(multiple=True)` per channel, on the batch's last delivery there: the consumer's channel is its
    own and the inbox is in delivery order, so everything up to it on that channel is this batch or an earlier
    (acked) one. Per channel: after a reconnect a batch can hold deliveries of the old channel too."""
    last: dict[int, AbstractIncomingMessage] = {}
    for message in batch:
        # A closed channel (`channel` raises) means the broker redelivers these: harmless, writes are idempotent.
        with contextlib.suppress(Exception):
            last[id(message.channel)] = message
    for message in last.values():
        with contextlib.suppress(Exception):
            await message.ack(multiple=True)

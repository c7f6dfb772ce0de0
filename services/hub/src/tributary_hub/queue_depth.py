"""The recorders' backlog as a metric: how many messages wait in each recorder queue, as the broker says
(a passive declare's message count: ready messages, not those delivered and unacked). Polled by every recorder
process, so several pods report the same queue: read it with `max by (queue)`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import aio_pika.abc
from prometheus_client import Gauge

from tributary_common.amqp import HUB_RECORDER_EVENTS, HUB_RECORDER_SAMPLES
from tributary_common.heartbeat import Heartbeat

log = logging.getLogger(__name__)

QUEUE_MESSAGES = Gauge(
    "tributary_hub_recorder_queue_messages", "Messages waiting in a recorder queue (ready, per the broker)", ["queue"]
)
RECORDER_QUEUES = (HUB_RECORDER_EVENTS.name, HUB_RECORDER_SAMPLES.name)


class QueueDepth:
    def __init__(self, queues: Sequence[str] = RECORDER_QUEUES, *, interval_s: float = 15.0) -> None:
        self.queues = tuple(queues)
        self.interval_s = interval_s
        self._loop: Heartbeat | None = None
        self._channel: aio_pika.abc.AbstractChannel | None = None

    def start(self, connection: aio_pika.abc.AbstractConnection) -> None:
        async def beat() -> None:
            try:
                await self.poll(connection)
            except Exception as exc:  # noqa: BLE001 - the broker is away; the recorders report that
                log.debug("queue depth poll failed: %s", exc)
                self._channel = None

        self._loop = Heartbeat(beat, interval_s=self.interval_s, name="recorder-queue-depth")
        self._loop.start()

    async def poll(self, connection: aio_pika.abc.AbstractConnection) -> None:
        for name in self.queues:
            if self._channel is None or self._channel.is_closed:
                # A passive declare of a missing queue closes the channel: a new one for the next.
                self._channel = await connection.channel()
            try:
                queue = await self._channel.declare_queue(name, passive=True)
            except Exception as exc:  # noqa: BLE001 - a metric is not worth failing the recorder for
                log.debug("queue depth of %s unavailable: %s", name, exc)
                with contextlib.suppress(KeyError):  # no stale depth: the series goes until it is known again
                    QUEUE_MESSAGES.remove(name)
                continue
            result = queue.declaration_result
            QUEUE_MESSAGES.labels(name).set(result.message_count or 0)

    async def stop(self) -> None:
        if self._loop is not None:
            await self._loop.stop()
        if self._channel is not None and not self._channel.is_closed:
            with contextlib.suppress(Exception):
                await self._channel.close()

"""The recorders' backlog metric against a real RabbitMQ: the broker's count of waiting messages per queue, and no
series (rather than a stale one) for a queue it cannot see."""

from __future__ import annotations

import aio_pika
from prometheus_client import REGISTRY

from tests.hub.conftest import filled_queue
from tributary_hub.queue_depth import QueueDepth


def _depth(queue: str) -> float | None:
    return REGISTRY.get_sample_value("tributary_hub_recorder_queue_messages", {"queue": queue})


async def test_depth_is_the_brokers_count_of_waiting_messages(amqp_url: str) -> None:
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await filled_queue(channel, "test.recorder.backlog", 3)
        depth = QueueDepth(["test.recorder.missing", queue.name], interval_s=60)
        await depth.poll(connection)
        assert _depth(queue.name) == 3
        # A missing queue closes the channel of its passive declare: no series, and the next queue still counted.
        assert _depth("test.recorder.missing") is None
        await queue.purge()
        await depth.poll(connection)
        assert _depth(queue.name) == 0
        await queue.delete(if_unused=False, if_empty=False)
        await depth.poll(connection)
        assert _depth(queue.name) is None, "a deleted queue keeps a stale depth"
        await depth.stop()
    finally:
        await connection.close()

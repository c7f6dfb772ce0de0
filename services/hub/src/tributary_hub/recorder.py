"""The recorders: durable queue -> batched `insert_many(ordered=False)` -> ack.

Deliveries come from the recorder's receiver (receivers.py: a pika thread for events, by default, and aio-pika for
samples and dead letters). One task takes and converts batches, another writes and acks them in order, so the next
batch is converted while the current one is written.

A batch is written when it holds `batch_size` messages or its first message waited `max_delay_ms`. Messages
are acknowledged only after their batch is written; duplicates (a redelivery, or a client resending an id on the
same topic: events are keyed by `(topic, id)`, samples by `(sid, t)`) are the unique `_id` refusing the insert,
which counts as written (samples: the bucket merge keeping the sample stored first, see sample_writes.py). While the
database is unreachable the same batch is retried with backoff and nothing is acked, so the queue holds everything.

No message ends a recorder. One that can never be written (undecodable, not a valid envelope, over
`max_event_bytes`, or refused by the database for what it is) goes to the dead-letter exchange with its reason,
confirmed before the original is acked, and the recorder carries on; it is logged at most once per reason per
`dead_letter_log_interval_s` with a count. The dead letters themselves are recorded by a recorder of
`tributary.deadletters` into the `deadletters` collection (see deadletters.py); what that one cannot write is
logged and counted (sending it to tributary.dead again would loop). `alive` turns false if the consume loop or
the broker's consumer is gone anyway, which turns /readyz red.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aio_pika.abc import AbstractRobustConnection
from opentelemetry import trace
from prometheus_client import Histogram

from tributary_common import deadletters
from tributary_common.amqp import Consumer, QueueSpec
from tributary_common.amqp.delivery import Delivery
from tributary_common.ratelog import LogThrottle
from tributary_common.tasks import cancel_and_wait
from tributary_common.telemetry import extract_context, tracer

from .amqp import declare_topology
from .batch_writer import BatchWriter, Refusal, Row, Sink
from .receivers import AioPikaReceiver, Receiver
from .recording import ToDocs, Unrecordable

log = logging.getLogger(__name__)
_tracer = tracer("tributary_hub.recorder")

# A batch turned into documents: rows to write, and the messages refused with their reason and detail.
Converted = tuple[list[Row], list[Refusal]]

# The longest a conversion runs before the event loop gets a turn: a batch converted in one go held it for tens
# (events) to hundreds (samples, a thousand per message) of milliseconds, which the API waits for when the
# recorders run in its process. By time, as a message may be one event or a thousand samples.
TURN_S = 0.002

BATCH = Histogram(
    "tributary_hub_recorder_batch_size", "Messages per write", ["kind"], buckets=(1, 10, 50, 100, 500, 1000, 5000)
)


class Recorder:
    def __init__(
        self,
        kind: str,
        queue: QueueSpec,
        collection: Sink | None,
        to_docs: ToDocs,
        *,
        batch_size: int,
        batch_bytes: int | None = None,
        max_delay_ms: int,
        prefetch: int,
        retry_min_s: float,
        retry_max_s: float,
        throttle: LogThrottle | None = None,
        dead_letters: bool = True,
        writer: BatchWriter | None = None,
        receiver: Receiver | None = None,
    ) -> None:
        self.kind = kind
        self.queue_name = queue.name
        self.collection = collection
        self.to_docs = to_docs
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes or float("inf")  # a batch also ends once its messages' bodies reach this
        self.max_delay_s = max_delay_ms / 1000
        self.prefetch = prefetch
        self.throttle = throttle or LogThrottle(60)
        # False for the recorder of dead letters: what it cannot write is logged and dropped, not sent round again.
        self.dead_letters = dead_letters
        self.writer = writer or BatchWriter(
            kind, queue.name, collection, retry_min_s=retry_min_s, retry_max_s=retry_max_s, throttle=self.throttle
        )
        # Declares the queue and its bindings (restored by the robust connection after a loss). No callback:
        # deliveries wait in the receiver's inbox until a batch takes them (the prefetch bounds it).
        self.consumer = Consumer(queue, prefetch=prefetch)
        self.receiver = receiver or AioPikaReceiver(self.consumer)
        self._inbox = self.receiver.inbox
        self._task: asyncio.Task[None] | None = None
        # Batches taken from the inbox and not acked yet, oldest first: the one being written, and the next ones
        # converted meanwhile. What `stop` waits for, and what goes back to the queue when the loop ends.
        self._held: list[list[Delivery]] = []
        self._batch_done = asyncio.Event()

    async def start(self, connection: AbstractRobustConnection) -> None:
        # The whole topology before the first delivery (every hub process declares it: see amqp.py).
        await self.consumer.start(connection, consume=False)
        await declare_topology(self.consumer.channel)
        if self.dead_letters:
            await self.writer.start_dead_letters(connection)
        await self.writer.start()
        await self.receiver.consume()
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.kind}")

    async def alive(self) -> bool:
        """The consume loop runs and the broker still delivers to our consumer (it cancels it when the queue
        is deleted, and the channel is closed while the connection is lost)."""
        if self._task is None or self._task.done():
            return False
        return await self.receiver.alive()

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop consuming, write what is already here (within `drain_timeout_s`), return the rest to the queue."""
        await self.receiver.cancel()
        deadline = time.monotonic() + drain_timeout_s
        while (self._held or not self._inbox.empty()) and (remaining := deadline - time.monotonic()) > 0:
            self._batch_done.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._batch_done.wait(), remaining)
        await cancel_and_wait(self._task)
        await self.receiver.close()
        await self.writer.stop(deadline - time.monotonic())

    async def _next_batch(self) -> list[Delivery]:
        batch = [await self._inbox.get()]
        inbox = self._inbox
        size = len(batch[0].body)
        # One timeout for the whole batch: `wait_for` per message made a task and a timer for each.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.max_delay_s):
                while len(batch) < self.batch_size and size < self.batch_bytes:
                    batch.append(inbox.get_nowait() if inbox.qsize() else await inbox.get())
                    size += len(batch[-1].body)
        return batch

    async def _run(self) -> None:
        """Two stages: one takes and converts batches, this one writes and acks them in order. The next batch is
        converted while the database writes the current one (the event loop would wait idle otherwise)."""
        converted: asyncio.Queue[tuple[list[Delivery], Converted]] = asyncio.Queue(maxsize=1)
        converter = asyncio.create_task(self._convert_batches(converted), name=f"recorder-{self.kind}-convert")
        this = asyncio.current_task()
        assert this is not None

        def converter_ended(_: object) -> None:
            this.cancel()  # whatever ends the converter ends the recorder (and its readiness), not a silent stall

        converter.add_done_callback(converter_ended)
        try:
            while True:
                batch, (rows, refused) = await converted.get()
                await self._store(batch, rows, refused)
                # Acknowledge only now that the batch is stored (or dead-lettered).
                await self.receiver.ack(batch)
                self._held.pop(0)
                self._batch_done.set()
        except asyncio.CancelledError:
            if not converter.cancelled() and converter.done() and converter.exception() is not None:
                log.error("%s recorder: converting stopped", self.kind, exc_info=converter.exception())
            converter.remove_done_callback(converter_ended)  # a second cancel would cut the release below short
            await cancel_and_wait(converter)
            # Unwritten messages go back to the queue (they would be redelivered anyway on close).
            held = [message for batch in self._held for message in batch]
            self._held.clear()
            await self.receiver.release(held + [self._inbox.get_nowait() for _ in range(self._inbox.qsize())])
            # And no more deliveries to a recorder that stopped: what it held goes to another replica meanwhile.
            await self.receiver.close()
            raise

    async def _convert_batches(self, converted: asyncio.Queue[tuple[list[Delivery], Converted]]) -> None:
        while True:
            batch = await self._next_batch()
            self._held.append(batch)
            await converted.put((batch, await self._convert(batch)))

    async def _convert(self, batch: list[Delivery]) -> Converted:
        rows: list[Row] = []
        refused: list[Refusal] = []
        turn_at = time.perf_counter() + TURN_S
        for message in batch:
            if time.perf_counter() >= turn_at:
                await asyncio.sleep(0)  # a turn for the rest of the process (see TURN_S)
                turn_at = time.perf_counter() + TURN_S
            try:
                rows.append((message, await self.to_docs(message)))
            except Unrecordable as exc:
                refused.append((message, exc.reason, exc.detail))
            except Exception as exc:
                if self.throttle.hit((self.kind, "conversion")) is not None:
                    log.exception("%s recorder: converting a message failed", self.kind)
                refused.append((message, deadletters.UNEXPECTED_ERROR, type(exc).__name__))
        return rows, refused

    async def _store(self, batch: list[Delivery], rows: list[Row], refused: list[Refusal]) -> None:
        """Write the batch and dead-letter what it refused, retried until done."""
        while True:
            try:
                await self._record(batch, rows, refused)
                return
            except Exception:
                # Not a message's fault (those are dead-lettered): keep the batch and try again.
                log.exception("%s recorder: batch failed; retrying in %.1f s", self.kind, self.writer.retry_max_s)
                await asyncio.sleep(self.writer.retry_max_s)

    async def _record(self, batch: list[Delivery], rows: list[Row], refused: list[Refusal]) -> None:
        BATCH.labels(self.kind).observe(len(batch))
        if rows:
            ctx = extract_context(batch[0].headers)
            with _tracer.start_as_current_span(
                f"record {self.kind}", context=ctx, kind=trace.SpanKind.CONSUMER
            ) as span:
                span.set_attribute("messaging.batch.message_count", len(batch))
                refused = refused + await self.writer.write(rows)
        # Concurrently (one channel, many confirms in flight): a flood of bad messages is not one round trip each.
        await asyncio.gather(*(self.writer.dead_letter(message, reason, detail) for message, reason, detail in refused))

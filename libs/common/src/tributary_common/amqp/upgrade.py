"""Declaring durable queues on a broker that may still hold them as classic queues (Tributary before quorum
queues): RabbitMQ refuses to redeclare a queue with another type (PRECONDITION_FAILED), so such a queue is moved.

    await ensure_queues(connection, *DURABLE_QUEUES)    # the hub, at start, before anything consumes them

For a queue `N` standing as classic where the spec wants quorum:
1. declare the holding queue `N.upgrade` (the spec's type, arguments and bindings): from now on every publish
   routed to `N` lands there too;
2. unbind `N`: publishes now land only in the holding queue;
3. move `N`'s messages into the holding queue (consumed in batches, their copies published with confirms, acked
   only then: nothing is acked before the broker holds its copy), then delete `N` (only when empty and unused: while
   an old recorder still consumes it, wait and move again, up to `wait_s`);
4. declare `N` as the spec says, unbind the holding queue, move its messages into `N`, delete it.
A message is moved through the fanout exchange `tributary.upgrade.<target>` so that it keeps its routing key (a
dead letter's names the queue it came from); its exchange reads `tributary.upgrade.<target>` from then on.
Each step may be repeated (another hub process upgrading at the same time, or a crash midway: the next start
finds the holding queue and finishes). Duplicates are possible, losses are not; the recorders are idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue

from ..backoff import Backoff
from .topology import QueueSpec, declare_queue, upgrade_mover
from .topology import upgrade_holding as holding

log = logging.getLogger(__name__)

DELIVERY_COUNT = "x-delivery-count"
# Messages consumed before their copies are published together and acked (one at a time: 92/s, measured).
MOVE_WINDOW = 500
# No delivery for this long: the source looks empty (then checked with a get).
MOVE_IDLE_S = 0.5
# While moving without pause, whether the source is still the queue meant is checked this often.
STILL_EVERY_S = 1.0


class UpgradeStuck(RuntimeError):
    """The old queue could not be deleted in time (an old process still consumes it)."""


async def ensure_queues(connection: AbstractConnection, *specs: QueueSpec, wait_s: float = 60.0) -> None:
    """Declare each spec with its exchanges and bindings, upgrading a queue of another type in place.

    The upgrade itself runs on a connection of its own, closed when done: on the caller's robust connection a
    reconnect would restore the upgrade's open channels and their passive declarations, and a queue another
    process removed meanwhile (a holding queue) then failed every reconnect (NOT_FOUND, retried every 5 s)."""
    own: AbstractConnection | None = None
    try:
        for spec in specs:
            if await declare_if_compatible(connection, spec):
                # A holding queue left by an upgrade that stopped midway: finish it.
                if await _exists(connection, holding(spec).name):
                    own = own or await _connect_like(connection)
                    await _drain_holding(own, spec)
                continue
            log.warning("queue %s exists with other arguments: upgrading it (see amqp/upgrade.py)", spec.name)
            own = own or await _connect_like(connection)
            await upgrade(own, spec, wait_s=wait_s)
    finally:
        if own is not None:
            with contextlib.suppress(Exception):
                await own.close()


async def _connect_like(connection: AbstractConnection) -> AbstractConnection:
    """A plain (not robust) connection to the broker `connection` reached."""
    assert isinstance(connection, aio_pika.Connection)  # aio-pika's (robust) connections carry their URL
    return await aio_pika.connect(connection.url)


async def upgrade(connection: AbstractConnection, spec: QueueSpec, *, wait_s: float) -> None:
    hold = holding(spec)
    channel = await connection.channel(publisher_confirms=True)
    moved, gone = 0, False
    try:
        await declare_queue(channel, hold)
        old = await channel.declare_queue(spec.name, passive=True)
        for exchange, key in spec.bindings:
            await old.unbind(exchange.name, routing_key=key)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        gone = True  # another hub process retired it meanwhile
    finally:
        await _close(channel)
    if not gone:
        moved = await _retire(connection, spec, hold.name, wait_s)
    await _drain_holding(connection, spec)
    log.warning("queue %s upgraded (%d messages moved)", spec.name, moved)


async def _retire(connection: AbstractConnection, spec: QueueSpec, into: str, wait_s: float) -> int:
    """Move the old queue's messages into `into` and delete it once it is empty and unused."""
    name = spec.name
    deadline = time.monotonic() + wait_s
    backoff = Backoff(0.2, 5.0, jitter=False)
    moved = 0
    while True:
        moved += await move(connection, name, into, still=lambda: _still_old(connection, spec))
        try:
            await _delete_old(connection, spec)
            return moved
        except aio_pika.exceptions.ChannelPreconditionFailed as exc:
            if time.monotonic() > deadline:
                raise UpgradeStuck(f"{name} still in use after {wait_s} s (stop the old consumers): {exc}") from exc
            delay = backoff.next_delay()
            log.warning("queue %s still in use or not empty (%s); moving again in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)


async def _still_old(connection: AbstractConnection, spec: QueueSpec) -> bool:
    """Whether `spec.name` still stands otherwise than the spec says (the old queue), not already replaced by
    another hub process upgrading at the same time. Asked by declaring the spec: where the other process deleted
    the old queue a moment ago, this declares the new one a little early, which it would declare next anyway;
    asking with the old queue's arguments would re-create the old queue, and that upgrade would start over."""
    return not await declare_if_compatible(connection, spec)


async def _delete_old(connection: AbstractConnection, spec: QueueSpec) -> None:
    """Delete the old classic queue once empty and unused (ChannelPreconditionFailed while it is not). `if_unused`
    on a quorum queue closes the whole connection (NOT_IMPLEMENTED), so the delete goes over a connection of its
    own: should another process replace the queue between the check and the delete, only that one is lost."""
    if not await _still_old(connection, spec):
        return
    side = await _connect_like(connection)
    try:
        channel = await side.channel()
        await channel.queue_delete(spec.name, if_unused=True, if_empty=True)
    except aio_pika.exceptions.ChannelPreconditionFailed:
        raise
    except Exception:
        if await _still_old(connection, spec):
            raise
        # Replaced meanwhile by the other process's quorum queue: the upgrade is done.
    finally:
        with contextlib.suppress(Exception):
            await side.close()


async def _drain_holding(connection: AbstractConnection, spec: QueueSpec) -> None:
    hold = holding(spec).name
    channel = await connection.channel()
    try:
        await declare_queue(channel, spec)
        queue = await channel.declare_queue(hold, passive=True)
        for exchange, key in spec.bindings:
            await queue.unbind(exchange.name, routing_key=key)
    finally:
        await _close(channel)
    await move(connection, hold, spec.name)
    channel = await connection.channel()
    try:
        # A quorum queue refuses if_unused/if_empty (NOT_IMPLEMENTED): it was drained and is bound to nothing.
        await channel.queue_delete(hold, if_unused=False, if_empty=False)
    finally:
        await _close(channel)


async def move(
    connection: AbstractConnection,
    source: str,
    target: str,
    *,
    window: int = MOVE_WINDOW,
    still: Callable[[], Awaitable[bool]] | None = None,
) -> int:
    """Every message of `source` into `target`, in batches of up to `window`: consumed, the copies published
    together, then acked once the broker confirmed each (a failure closes the channel: the unacked ones stay in
    `source`). Returns once a `basic.get` finds `source` empty, or once `still` says that `source` is no longer
    the queue meant, checked whenever the move stopped consuming (only then can the queue be replaced)."""
    if still is not None and not await still():
        return 0
    channel = await connection.channel(publisher_confirms=True)
    await channel.set_qos(prefetch_count=window)
    mover = upgrade_mover(target)
    moved = 0
    try:
        exchange = await channel.declare_exchange(mover.name, mover.type, durable=False)
        target_queue = await channel.declare_queue(target, passive=True)
        await target_queue.bind(exchange)
        queue: AbstractQueue = await channel.declare_queue(source, passive=True)
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
        tag = await queue.consume(inbox.put)
        last_batch, checked = False, time.monotonic()
        while True:
            try:
                batch = [await asyncio.wait_for(inbox.get(), MOVE_IDLE_S)]
                if still is not None and time.monotonic() - checked > STILL_EVERY_S:
                    # Replaced between the check above and the first consume: the other process pumps into it.
                    checked = time.monotonic()
                    if not await still():
                        await queue.cancel(tag)
                        batch += [inbox.get_nowait() for _ in range(inbox.qsize())]
                        last_batch = True
            except TimeoutError:
                await queue.cancel(tag)
                batch = [inbox.get_nowait() for _ in range(inbox.qsize())]
                # Replaced by another process's upgrade while not consumed: moving on would pump back what that
                # process moves into it, forever. What was delivered before still goes.
                last_batch = still is not None and not await still()
                # Delivered meanwhile, or (quorum queues count lazily) still there: a get is the last word.
                if not batch and not last_batch and (last := await queue.get(no_ack=False, fail=False)) is not None:
                    batch = [last]
                if not batch:
                    break
                if not last_batch:
                    tag = await queue.consume(inbox.put)
            while len(batch) < window and not inbox.empty():
                batch.append(inbox.get_nowait())
            await asyncio.gather(*(exchange.publish(_copy(m), routing_key=m.routing_key or "") for m in batch))
            for message in batch:
                await message.ack()
            moved += len(batch)
            if last_batch:
                break
        await exchange.delete()
    finally:
        await _close(channel)
    return moved


def _copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    return aio_pika.Message(
        message.body,
        # The broker's count of deliveries from the queue it leaves is not the message's.
        headers={k: v for k, v in (message.headers or {}).items() if k != DELIVERY_COUNT} or None,
        content_type=message.content_type,
        content_encoding=message.content_encoding,
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        priority=message.priority,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        message_id=message.message_id,
        timestamp=message.timestamp,
        type=message.type,
        app_id=message.app_id,
    )


async def declare_if_compatible(connection: AbstractConnection, spec: QueueSpec) -> bool:
    """Declared as the spec says (True), or refused because it exists otherwise (False: a process other than
    the hub then uses it as it is, and the hub upgrades it)."""
    return await _accepted(connection, lambda ch: declare_queue(ch, spec))


async def _exists(connection: AbstractConnection, name: str) -> bool:
    return await _accepted(
        connection, lambda ch: ch.declare_queue(name, passive=True), aio_pika.exceptions.ChannelNotFoundEntity
    )


async def _accepted(
    connection: AbstractConnection,
    declare: Callable[[AbstractChannel], Awaitable[object]],
    refusal: type[Exception] = aio_pika.exceptions.ChannelPreconditionFailed,
) -> bool:
    """Whether the broker accepts `declare` (False when it answers with `refusal`), on a channel of its own: a
    refusal closes the channel."""
    channel = await connection.channel()
    try:
        await declare(channel)
        return True
    except refusal:
        return False
    finally:
        await _close(channel)


async def _close(channel: AbstractChannel) -> None:
    if not channel.is_closed:
        try:
            await channel.close()
        except Exception as exc:  # noqa: BLE001 - a channel the broker closed is closed
            log.debug("closing a channel: %s", exc)

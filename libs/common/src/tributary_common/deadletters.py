"""Dead letters: what a consumer can never use goes to `tributary.dead`, never dropped without trace.

Use (any aio-pika consumer):

    dead = DeadLetters(await connection.channel(publisher_confirms=True))
    await dead.start(connection)            # declares tributary.dead and the tributary.deadletters queue
    ...
    await dead.send_until_confirmed(message, queue=MY_QUEUE, reason=NOT_A_CLOUDEVENT, detail="data: missing")
    await message.ack()                     # only now: the dead letter is confirmed by the broker

`send` publishes once and raises when the broker does not confirm (the caller keeps the original unacked);
`send_until_confirmed` retries with backoff until it is confirmed (or the task is cancelled).

The letter is the original message, body and properties unchanged (so a replay publishes the same message),
persistent, routed to `tributary.dead` with routing key = the queue it was consumed from, with these headers
added to the original ones:

    x-death-id              this letter's id: 32 lowercase hex (a UUIDv7), new at every dead-lettering (the
                            hub keys stored letters by it, so a redelivered letter is kept once)
    x-death-reason          one word of REASONS (below)
    x-death-detail          what was wrong, at most DETAIL_MAX characters, never the body itself
    x-original-exchange     the exchange the message had been published to ("" for the default exchange)
    x-original-routing-key  its routing key
    x-first-failure         RFC 3339 UTC time of the first failure; kept when the message was dead-lettered
                            before (a replay that fails again keeps its first failure time)

Reasons (a small fixed vocabulary, used as a metric label; say more in the detail):

    undecodable          not JSON / not the expected encoding
    not_a_<what>         decodes, but is not a valid <what>: not_a_cloudevent, not_a_sample_batch,
                         not_a_control_message, ...
    too_large            over a size limit
    refused_by_database  the database refused the document itself (retrying cannot help)
    unexpected_error     the consumer failed on it in an unforeseen way (a bug: see the consumer's log)

`tributary.deadletters` (a quorum queue, bound `#`) keeps every letter until the hub records it for admins.

The broker dead-letters too: a message of a recorder queue delivered DELIVERY_LIMIT times without an ack goes
to `tributary.dead` with routing key = its queue (see amqp/topology.py), without the headers above but with the
broker's `x-death` list (reason `delivery_limit`, queue, exchange, routing keys, time): `broker_death` reads
it into the same fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import re
from collections.abc import Mapping
from typing import Any

import aio_pika
import uuid_utils
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange

from .amqp.delivery import Delivery
from .amqp.topology import DEAD, DEADLETTERS, declare_exchange, declare_queue
from .amqp.upgrade import declare_if_compatible
from .backoff import Backoff
from .timeutil import format_time, utcnow

log = logging.getLogger(__name__)

LETTER_ID = "x-death-id"
REASON = "x-death-reason"
DETAIL = "x-death-detail"
ORIGINAL_EXCHANGE = "x-original-exchange"
ORIGINAL_ROUTING_KEY = "x-original-routing-key"
FIRST_FAILURE = "x-first-failure"
HEADERS = (LETTER_ID, REASON, DETAIL, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, FIRST_FAILURE)

UNDECODABLE = "undecodable"
NOT_A_CLOUDEVENT = "not_a_cloudevent"
NOT_A_SAMPLE_BATCH = "not_a_sample_batch"
NOT_A_CONTROL_MESSAGE = "not_a_control_message"
TOO_LARGE = "too_large"
REFUSED_BY_DATABASE = "refused_by_database"
UNEXPECTED_ERROR = "unexpected_error"
REASONS = frozenset(
    {UNDECODABLE, NOT_A_CLOUDEVENT, NOT_A_SAMPLE_BATCH, NOT_A_CONTROL_MESSAGE, TOO_LARGE, REFUSED_BY_DATABASE}
    | {UNEXPECTED_ERROR}
)
# A reason is a short lowercase word (it is a metric label and a filter value); REASONS lists the usual ones.
REASON_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
DETAIL_MAX = 500


def is_reason(value: str) -> bool:
    return REASON_PATTERN.fullmatch(value) is not None


def letter_headers(message: Delivery, *, reason: str, detail: str) -> dict[str, Any]:
    """The original headers plus the dead-letter ones (see the module docstring)."""
    if not is_reason(reason):
        raise ValueError(f"not a dead-letter reason: {reason!r}")
    headers: dict[str, Any] = dict(message.headers or {})
    headers.setdefault(FIRST_FAILURE, format_time(utcnow()))
    headers.update(
        {
            LETTER_ID: uuid_utils.uuid7().hex,
            REASON: reason,
            DETAIL: detail[:DETAIL_MAX],
            ORIGINAL_EXCHANGE: message.exchange or "",
            ORIGINAL_ROUTING_KEY: message.routing_key or "",
        }
    )
    return headers


def broker_death(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The dead-letter fields (REASON, DETAIL, ORIGINAL_EXCHANGE, ORIGINAL_ROUTING_KEY, FIRST_FAILURE) of a
    message the broker dead-lettered, from its `x-death` header (the latest death first); {} when there is none."""
    deaths = headers.get("x-death")
    if not isinstance(deaths, list | tuple) or not deaths or not isinstance(deaths[0], Mapping):
        return {}
    death = deaths[0]
    reason = str(death.get("reason", ""))
    keys = death.get("routing-keys")
    first = death.get("time")
    return {
        REASON: reason if is_reason(reason) else UNEXPECTED_ERROR,
        DETAIL: f"dead-lettered by the broker from {death.get('queue')!s} ({reason}, count {death.get('count')!s})",
        ORIGINAL_EXCHANGE: str(death.get("exchange", "")),
        ORIGINAL_ROUTING_KEY: str(keys[0]) if isinstance(keys, list | tuple) and keys else "",
        FIRST_FAILURE: format_time(first) if isinstance(first, dt.datetime) else None,
    }


async def declare_dead_letters(
    channel: AbstractChannel, connection: AbstractConnection | None = None
) -> AbstractExchange:
    """`tributary.dead` and the `tributary.deadletters` queue bound to it with `#`. With `connection`, the queue
    is declared on a channel of its own and an older (classic) one is used as it is until the hub upgrades it."""
    exchange = await declare_exchange(channel, DEAD)
    if connection is None:
        await declare_queue(channel, DEADLETTERS)
    elif not await declare_if_compatible(connection, DEADLETTERS):
        log.info("%s is still a classic queue: the hub upgrades it at its start", DEADLETTERS.name)
    return exchange


class DeadLetters:
    """Sends consumed messages that can never be used to `tributary.dead`, with broker confirms.

    The channel must have been opened with `publisher_confirms=True`: `send` returns only once the broker has
    taken the letter, so acking the original afterwards can lose nothing.
    """

    def __init__(self, channel: AbstractChannel, *, retry_min_s: float = 0.2, retry_max_s: float = 5.0) -> None:
        self._channel = channel
        self._connection: AbstractConnection | None = None
        self._renewing = asyncio.Lock()
        self._exchange: AbstractExchange | None = None
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s

    async def start(self, connection: AbstractConnection | None = None) -> None:
        """Declare what letters go through (see `declare_dead_letters`: pass the channel's connection)."""
        self._connection = connection
        self._exchange = await declare_dead_letters(self._channel, connection)

    async def _renew(self, nacked_on: AbstractChannel) -> None:
        """A new channel after a nack (with the connection given to `start`): see amqp/publisher.py for why."""
        async with self._renewing:
            if self._connection is None or nacked_on is not self._channel:
                return  # no connection to open one on, or replaced already
            channel = await self._connection.channel(publisher_confirms=True)
            self._exchange = await declare_exchange(channel, DEAD)
            self._channel = channel
        if not nacked_on.is_closed:
            await nacked_on.close()

    async def send(self, message: Delivery, *, queue: str, reason: str, detail: str) -> None:
        """Once; raises when the broker does not confirm (keep the original unacked and retry)."""
        if self._exchange is None:
            raise RuntimeError("dead letters not started")
        letter = aio_pika.Message(
            message.body,
            headers=letter_headers(message, reason=reason, detail=detail),
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await self._exchange.publish(letter, routing_key=queue, mandatory=False)

    async def send_until_confirmed(self, message: Delivery, *, queue: str, reason: str, detail: str) -> None:
        """`send`, retried with backoff while the broker is away or does not confirm."""
        if self._exchange is None:
            raise RuntimeError("dead letters not started")
        backoff = Backoff(self.retry_min_s, self.retry_max_s, jitter=False)
        while True:
            channel = self._channel
            try:
                await self.send(message, queue=queue, reason=reason, detail=detail)
                return
            except ValueError:
                raise
            except Exception as exc:  # noqa: BLE001 - the broker being away: keep the message, try again
                if isinstance(exc, aio_pika.exceptions.DeliveryError):
                    with contextlib.suppress(Exception):
                        await self._renew(channel)
                delay = backoff.next_delay()
                log.warning("dead letter from %s not confirmed (%s); retrying in %.1f s", queue, exc, delay)
                await asyncio.sleep(delay)

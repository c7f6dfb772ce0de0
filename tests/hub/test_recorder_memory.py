"""The recorders' memory bound: the broker counts messages, not bytes, so each recorder's prefetch (and its batch
with it) is lowered until that many of the largest messages it may get fit in its budget
(`TRIBUTARY_RECORDER_EVENT_MEMORY_MB` for events, whose size clients choose; `TRIBUTARY_RECORDER_MEMORY_MB` for
sample batches, which ingest keeps under `SAMPLE_BATCH_MAX_BYTES`, and dead letters). On the real broker, what does
not fit stays in the queue: test_pika_receiver.py; ingest's split: tests/ingest/test_batch_split.py."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError
from pymongo import AsyncMongoClient

from tests.support import platform
from tributary_common.amqp import HUB_RECORDER_SAMPLES
from tributary_common.samples import SAMPLE_BATCH_MAX_BYTES
from tributary_hub.partitions import Layout
from tributary_hub.pika_receiver import PikaReceiver
from tributary_hub.recorder import Recorder
from tributary_hub.recorders import make_recorders, memory_window
from tributary_hub.sample_records import SampleWriter, samples_to_docs
from tributary_hub.sample_store import SampleStore
from tributary_hub.settings import HubSettings

MiB = 1024 * 1024


def test_the_window_fits_the_budget_and_keeps_the_batch_in_proportion() -> None:
    assert memory_window(4000, 2000, 4096 * MiB, MiB) == (4000, 2000)  # the defaults: unchanged
    assert memory_window(4000, 2000, 128 * MiB, MiB) == (128, 64)
    assert memory_window(4000, 2000, 128 * MiB, 64 * 1024) == (2048, 1024)
    assert memory_window(4000, 4000, 10 * MiB, MiB) == (10, 10)  # no pipelining asked: none made
    assert memory_window(4000, 2000, MiB, 8 * MiB) == (1, 1)  # never nothing
    for prefetch, batch, memory, largest in [(4000, 2000, 300 * MiB, 3 * MiB), (7, 3, 20, 3), (1, 1, 1, 1)]:
        window, size = memory_window(prefetch, batch, memory, largest)
        assert 1 <= size <= window <= prefetch and (window == 1 or window * largest <= memory)


def test_the_recorders_take_the_lowered_window_from_the_settings(amqp_url: str) -> None:
    settings = HubSettings(
        dev_mode=True, amqp_url=amqp_url, recorder_event_memory_mb=16, recorder_memory_mb=8, max_event_bytes=MiB // 2
    )
    client: AsyncMongoClient[Any] = AsyncMongoClient(platform.mongodb_url(), connect=False)  # never connects
    store = SampleStore(client["unused"], Layout.PARTITIONED)
    events, samples, letters = make_recorders(settings, Any, store, Any)  # type: ignore[arg-type]
    assert (events.prefetch, events.batch_size) == (32, 16)
    assert isinstance(events.receiver, PikaReceiver) and events.receiver.prefetch == 32
    # A sample batch is at most SAMPLE_BATCH_MAX_BYTES (ingest splits larger ones); a dead letter the larger of
    # that and an event.
    assert MiB == SAMPLE_BATCH_MAX_BYTES
    assert (samples.prefetch, samples.batch_size) == (8, 4)  # the batch kept at half the prefetch, as asked
    assert (letters.prefetch, letters.batch_size) == (8, 4)
    on_aio_pika = make_recorders(settings.model_copy(update={"recorder_event_receiver": "aio-pika"}), Any, store, Any)  # type: ignore[arg-type]
    assert on_aio_pika[0].consumer.prefetch == 32
    defaults = make_recorders(HubSettings(dev_mode=True, amqp_url=amqp_url), Any, store, Any)  # type: ignore[arg-type]
    assert [(r.prefetch, r.batch_size) for r in defaults] == [(4000, 2000), (2000, 1000), (2000, 1000)]
    # Samples and dead letters also end a batch at 16 MiB of bodies; events are bounded by their window alone.
    assert [r.batch_bytes for r in defaults] == [float("inf"), 16 * MiB, 16 * MiB]
    # Samples are staged on FerretDB's layouts unless turned off, and never on MongoDB's.
    assert isinstance(defaults[1].writer, SampleWriter) and defaults[1].writer.stages
    off = HubSettings(dev_mode=True, amqp_url=amqp_url, sample_staging=False)
    assert not make_recorders(off, Any, store, Any)[1].writer.stages  # type: ignore[arg-type, attr-defined]
    indexed = SampleStore(client["unused"], Layout.INDEXED)
    assert not make_recorders(settings, Any, indexed, Any)[1].writer.stages  # type: ignore[arg-type, attr-defined]


async def test_a_batch_ends_at_its_size_in_bytes_or_in_messages() -> None:
    """A thousand sample batches of a thousand samples in one write held the API's event loop for tens of
    milliseconds at a time; a thousand one-sample batches (1 Hz sids) are small, and cheaper together."""

    @dataclass
    class Message:
        body: bytes
        headers: dict[str, Any] = field(default_factory=dict)

    receiver = SimpleNamespace(inbox=asyncio.Queue())
    recorder = Recorder(
        "samples",
        HUB_RECORDER_SAMPLES,
        None,
        samples_to_docs(),
        batch_size=100,
        batch_bytes=MiB,
        max_delay_ms=50,
        prefetch=200,
        retry_min_s=0.1,
        retry_max_s=0.1,
        receiver=receiver,  # type: ignore[arg-type]
    )
    for body in [b"x" * 400 * 1024] * 4 + [b"y" * 100] * 150:
        receiver.inbox.put_nowait(Message(body))
    assert [len(m.body) for m in await recorder._next_batch()] == [400 * 1024] * 3  # 1.2 MiB: ends there
    assert len(await recorder._next_batch()) == 100  # one large, 99 small: ends at 100 messages
    assert len(await recorder._next_batch()) == 51  # the rest, then the delay


@pytest.mark.parametrize("field", ["recorder_event_memory_mb", "recorder_memory_mb"])
@pytest.mark.parametrize("value", [0, -5, 10**7, "lots"])
def test_a_budget_out_of_range_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValidationError, match=field):
        HubSettings.model_validate({"dev_mode": True, field: value})

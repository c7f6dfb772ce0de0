"""The hub's three recorders (events, samples, dead letters) built from the settings, each with a prefetch that
bounds what it holds in bytes: the broker counts unacked messages, not bytes, so a recorder's prefetch times the
largest message it may get is what its memory holds while its database is slow or away."""

from __future__ import annotations

import logging
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection

from tributary_common.amqp import DEADLETTERS, HUB_RECORDER_EVENTS, HUB_RECORDER_SAMPLES
from tributary_common.ratelog import LogThrottle
from tributary_common.samples import SAMPLE_BATCH_MAX_BYTES

from .batch_writer import Sink
from .event_records import TopicRetention, events_to_docs
from .pika_receiver import PikaReceiver
from .receivers import Receiver
from .recorder import Recorder
from .sample_records import SampleWriter, letters_to_docs, samples_to_docs
from .sample_store import SampleStore

log = logging.getLogger(__name__)


def memory_window(prefetch: int, batch_size: int, memory_bytes: int, largest: int) -> tuple[int, int]:
    """(prefetch, batch size) lowered until `prefetch` messages of `largest` bytes fit in `memory_bytes`, the batch
    kept in the same proportion to the prefetch (so that the next batch still arrives while one is written)."""
    fits = max(1, memory_bytes // largest)
    if fits >= prefetch:
        return prefetch, batch_size
    return fits, max(1, min(batch_size, batch_size * fits // prefetch))


def _windowed(kind: str, prefetch: int, batch_size: int, memory_mb: int, largest: int, setting: str) -> dict[str, Any]:
    """`memory_window`'s prefetch and batch size as `Recorder` arguments, logged when lowered."""
    window, size = memory_window(prefetch, batch_size, memory_mb * 1024 * 1024, largest)
    if window < prefetch:
        log.info(
            "%s recorder: prefetch %d and batches of %d (asked %d and %d): %d messages of up to %d bytes fit in %s=%d",
            kind,
            window,
            size,
            prefetch,
            batch_size,
            window,
            largest,
            setting,
            memory_mb,
        )
    return {"prefetch": window, "batch_size": size}


def make_recorders(settings: Any, events: Sink, samples: SampleStore, letters: AsyncCollection[Any]) -> list[Recorder]:
    throttle = LogThrottle(settings.dead_letter_log_interval_s)
    common = dict(
        max_delay_ms=settings.recorder_batch_max_delay_ms,
        retry_min_s=settings.recorder_retry_min_s,
        retry_max_s=settings.recorder_retry_max_s,
        throttle=throttle,
    )
    retention = TopicRetention(settings.recorder_topic_cache_s)
    # What each recorder may hold unacked is bounded in bytes by its prefetch times the largest message it may get.
    event_window = _windowed(
        "events",
        settings.recorder_event_prefetch,
        settings.recorder_event_batch_size,
        settings.recorder_event_memory_mb,
        settings.max_event_bytes,
        "TRIBUTARY_RECORDER_EVENT_MEMORY_MB",
    )
    sample_window, letter_window = (
        _windowed(
            kind,
            settings.recorder_prefetch,
            settings.recorder_batch_size,
            settings.recorder_memory_mb,
            largest,
            "TRIBUTARY_RECORDER_MEMORY_MB",
        )
        for kind, largest in (
            ("samples", SAMPLE_BATCH_MAX_BYTES),
            ("deadletters", max(SAMPLE_BATCH_MAX_BYTES, settings.max_event_bytes)),
        )
    )
    receiver: Receiver | None = None  # the events recorder's Consumer, on aio-pika
    if settings.recorder_event_receiver == "pika":
        receiver = PikaReceiver(
            settings.amqp_url, HUB_RECORDER_EVENTS.name, prefetch=event_window["prefetch"], name="hub-recorder-events"
        )
    return [
        Recorder(
            "events",
            HUB_RECORDER_EVENTS,
            events,
            events_to_docs(retention, settings.max_event_bytes),
            receiver=receiver,
            **common,
            **event_window,
        ),
        Recorder(
            "samples",
            HUB_RECORDER_SAMPLES,
            None,
            samples_to_docs(settings.sample_value_max_bytes),
            writer=SampleWriter(
                "samples",
                HUB_RECORDER_SAMPLES.name,
                None,
                retry_min_s=settings.recorder_retry_min_s,
                retry_max_s=settings.recorder_retry_max_s,
                throttle=throttle,
                store=samples,
                staged=settings.sample_staging,
            ),
            batch_bytes=settings.recorder_batch_mb * 1024 * 1024,
            **common,
            **sample_window,
        ),
        Recorder(
            "deadletters",
            DEADLETTERS,
            letters,
            letters_to_docs(settings.dead_letter_body_max_bytes, throttle),
            dead_letters=False,
            batch_bytes=settings.recorder_batch_mb * 1024 * 1024,
            **common,
            **letter_window,
        ),
    ]

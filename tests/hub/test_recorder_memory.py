"""The events recorder's memory bound: clients choose their events' size and the broker counts messages, not
bytes, so the prefetch (and the batch with it) is lowered until that many events of the largest size allowed fit
in `TRIBUTARY_RECORDER_EVENT_MEMORY_MB` (on the real broker, what does not fit stays in the queue:
test_pika_receiver.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from tributary_hub.pika_receiver import PikaReceiver
from tributary_hub.recorder import event_window, make_recorders
from tributary_hub.settings import HubSettings

MiB = 1024 * 1024


def test_the_window_fits_the_budget_and_keeps_the_batch_in_proportion() -> None:
    assert event_window(4000, 2000, 4096 * MiB, MiB) == (4000, 2000)  # the defaults: unchanged
    assert event_window(4000, 2000, 128 * MiB, MiB) == (128, 64)
    assert event_window(4000, 2000, 128 * MiB, 64 * 1024) == (2048, 1024)
    assert event_window(4000, 4000, 10 * MiB, MiB) == (10, 10)  # no pipelining asked: none made
    assert event_window(4000, 2000, MiB, 8 * MiB) == (1, 1)  # never nothing
    for prefetch, batch, memory, largest in [(4000, 2000, 300 * MiB, 3 * MiB), (7, 3, 20, 3), (1, 1, 1, 1)]:
        window, size = event_window(prefetch, batch, memory, largest)
        assert 1 <= size <= window <= prefetch and (window == 1 or window * largest <= memory)


def test_the_recorders_take_the_lowered_window_from_the_settings(amqp_url: str) -> None:
    settings = HubSettings(dev_mode=True, amqp_url=amqp_url, recorder_event_memory_mb=16, max_event_bytes=MiB // 2)
    events, samples, letters = make_recorders(settings, Any, Any, Any)  # type: ignore[arg-type]
    assert (events.prefetch, events.batch_size) == (32, 16)
    assert isinstance(events.receiver, PikaReceiver) and events.receiver.prefetch == 32
    assert (samples.prefetch, letters.prefetch) == (settings.recorder_prefetch, settings.recorder_prefetch)
    on_aio_pika = make_recorders(settings.model_copy(update={"recorder_event_receiver": "aio-pika"}), Any, Any, Any)  # type: ignore[arg-type]
    assert on_aio_pika[0].consumer.prefetch == 32


@pytest.mark.parametrize("value", [0, -5, 10**7, "lots"])
def test_a_budget_out_of_range_is_refused_by_name(value: object) -> None:
    with pytest.raises(ValidationError, match="recorder_event_memory_mb"):
        HubSettings.model_validate({"dev_mode": True, "recorder_event_memory_mb": value})

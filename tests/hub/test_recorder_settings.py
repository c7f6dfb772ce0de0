"""The recorders' batch settings are bounded: a hostile or mistyped value is refused at start, naming the
setting, rather than asking the broker for unbounded unacked messages (memory) or never flushing."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tributary_hub.settings import HubSettings


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("recorder_event_prefetch", 0),
        ("recorder_event_prefetch", 1_000_000),
        ("recorder_prefetch", -1),
        ("recorder_prefetch", 10**9),
        ("recorder_event_batch_size", 0),
        ("recorder_event_batch_size", 100_000),
        ("recorder_batch_size", 10**6),
        ("recorder_batch_mb", 0),
        ("recorder_batch_mb", 10**6),
        ("recorder_batch_mb", "lots"),
        ("recorder_batch_max_delay_ms", 0),
        ("recorder_batch_max_delay_ms", 86_400_000),
        ("recorder_event_receiver", "kafka"),
        ("recorder_event_receiver", ""),
        ("sample_staging", "maybe"),
        ("sample_staging", 2),
    ],
)
def test_out_of_range_recorder_settings_are_refused_by_name(field: str, value: int | str) -> None:
    with pytest.raises(ValidationError, match=field):
        HubSettings.model_validate({"dev_mode": True, field: value})


def test_the_defaults_and_the_bounds_are_accepted() -> None:
    s = HubSettings(dev_mode=True)
    assert (s.recorder_event_batch_size, s.recorder_event_prefetch) == (2000, 4000)
    assert s.recorder_event_receiver == "pika"
    assert s.sample_staging and not HubSettings(dev_mode=True, sample_staging="false").sample_staging
    assert HubSettings(dev_mode=True, recorder_event_receiver="aio-pika").recorder_event_receiver == "aio-pika"
    top = HubSettings(dev_mode=True, recorder_event_prefetch=20_000, recorder_prefetch=20_000)
    assert (top.recorder_event_prefetch, top.recorder_prefetch) == (20_000, 20_000)

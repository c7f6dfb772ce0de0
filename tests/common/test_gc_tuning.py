"""`raise_gc_thresholds`: each threshold at least the given one, none lowered; the hub's entry point and ingest's
`tune_gc` apply their own."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import tributary_hub.__main__ as hub_main
from tributary_common.gc_tuning import raise_gc_thresholds
from tributary_hub.settings import HubSettings
from tributary_ingest.gc_tuning import MIDDLE_PER_FULL, YOUNG_PER_MIDDLE, tune_gc


@pytest.fixture(autouse=True)
def restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_raises_each_threshold_and_lowers_none() -> None:
    gc.set_threshold(700, 10, 10)
    raise_gc_thresholds(7000, 5, 100)
    assert gc.get_threshold() == (7000, 10, 100)
    raise_gc_thresholds(0, 0, 0)
    assert gc.get_threshold() == (7000, 10, 100)


@pytest.mark.parametrize("command", ["serve", "recorder"])
def test_the_hub_runs_with_its_thresholds(monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    gc.set_threshold(700, 10, 10)
    seen: list[tuple[int, int, int]] = []

    def run(_settings: HubSettings) -> None:
        seen.append(gc.get_threshold())

    async def record(_settings: HubSettings) -> None:
        seen.append(gc.get_threshold())

    monkeypatch.setattr(hub_main, "serve", run)
    monkeypatch.setattr(hub_main, "record", record)
    monkeypatch.setattr(hub_main, "setup_tracing", lambda *_args: None)
    monkeypatch.setattr(hub_main, "shutdown_tracing", lambda: None)
    monkeypatch.setenv("TRIBUTARY_JWT_SECRET", "s" * 48)
    hub_main.main([command])
    assert seen == [hub_main.GC_THRESHOLDS]


def test_ingest_raises_the_middle_and_full_thresholds_and_keeps_the_young_one() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    tune_gc()
    assert gc.get_threshold() == (700, YOUNG_PER_MIDDLE, MIDDLE_PER_FULL)
    gc.set_threshold(5000, YOUNG_PER_MIDDLE * 3, MIDDLE_PER_FULL * 2)  # never lowers what was set higher
    tune_gc()
    assert gc.get_threshold() == (5000, YOUNG_PER_MIDDLE * 3, MIDDLE_PER_FULL * 2)

"""`tune_gc`: the middle and full collections' thresholds raised for a process holding many busy sids."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from tributary_ingest.gc_tuning import MIDDLE_PER_FULL, YOUNG_PER_MIDDLE, tune_gc


@pytest.fixture(autouse=True)
def restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_raises_the_middle_and_full_thresholds_and_keeps_the_young_one() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's defaults
    tune_gc()
    assert gc.get_threshold() == (700, YOUNG_PER_MIDDLE, MIDDLE_PER_FULL)


def test_never_lowers_what_was_set_higher() -> None:
    gc.set_threshold(5000, YOUNG_PER_MIDDLE * 3, MIDDLE_PER_FULL * 2)
    tune_gc()
    assert gc.get_threshold() == (5000, YOUNG_PER_MIDDLE * 3, MIDDLE_PER_FULL * 2)

"""The first page of a resume "after an id" (pure logic, no services): what it holds up to that id was seen; and
what a replay remembers of what it sent, for the seam."""

from __future__ import annotations

import logging
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from tributary_common.timeutil import format_time, utcnow
from tributary_stream.catchup import EventsHistory
from tributary_stream.protocol import EventsSince

SETTINGS = SimpleNamespace(
    history_page_size=500,
    seam_margin_s=60.0,
    replay_settle_s=1.0,
    replay_catchup_max_s=30.0,
    replay_unknown_id_wait_s=10.0,
)


class Sub:
    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self.buffer: list[Any] = []
        self.sent: list[str] = []

    async def send_history(self, event_id: str, time: str, envelope_json: str) -> None:
        self.sent.append(event_id)


def history(pattern: str, after_id: str) -> tuple[EventsHistory, Sub]:
    sub = Sub(pattern)
    h = EventsHistory(
        sub,  # type: ignore[arg-type]
        EventsSince(after_id=after_id),
        utcnow(),
        None,  # type: ignore[arg-type]
        SETTINGS,  # type: ignore[arg-type]
        subscribed=lambda: None,
        refuse=lambda code, message: None,
    )
    return h, sub


def page(*ids: str) -> list[dict[str, Any]]:
    now = format_time(utcnow())
    return [{"id": i, "time": now, "type": "t"} for i in ids]


async def test_a_first_page_that_holds_the_id_resumed_after_is_sent_from_after_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h, sub = history("t.#", "e3")
    with caplog.at_level(logging.WARNING, logger="tributary_stream.catchup"):
        await h.deliver(page("e1", "e2", "e3", "e4", "e5"))
    assert sub.sent == ["e4", "e5"]
    assert "began 3 event(s) before it" in caplog.text
    await h.deliver(page("e6", "e3"))  # later pages are not the resume's: nothing is dropped there
    assert sub.sent == ["e4", "e5", "e6", "e3"]


async def test_a_first_page_after_the_id_is_sent_whole(caplog: pytest.LogCaptureFixture) -> None:
    h, sub = history("t.#", "e3")
    with caplog.at_level(logging.WARNING, logger="tributary_stream.catchup"):
        await h.deliver(page("e4", "e5"))
    assert sub.sent == ["e4", "e5"] and caplog.text == ""


@pytest.mark.parametrize("pattern", ["*.x", "#"])
async def test_over_several_topics_nothing_is_dropped(pattern: str) -> None:
    # The id may name an event in each topic; which one the client saw is unknown: a duplicate, never a loss.
    h, sub = history(pattern, "e3")
    await h.deliver(page("e1", "e3", "e4"))
    assert sub.sent == ["e1", "e3", "e4"]


async def test_a_replay_remembers_only_what_can_still_meet_a_live_copy() -> None:
    # Every client of a busy pattern resuming at once (a stream restart) kept `seam_margin_s` of ids each.
    h, sub = history("t.#", "e0")
    before = format_time(utcnow() - timedelta(seconds=30))
    await h.deliver([{"id": f"o{i}", "time": before, "type": "t"} for i in range(500)])
    assert len(h.seen) == 500  # nothing came live yet: any of them may still be buffered
    sub.buffer.append(("n0", format_time(utcnow()), "{}", "t"))  # the live feed's first event for it
    await h.deliver(page("n0", "n1"))
    assert set(h.seen) == {("t", "n0"), ("t", "n1")}  # the feed delivered the older ones before it subscribed
    assert len(sub.sent) == 502

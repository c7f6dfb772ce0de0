"""The console's operator views in a real browser (Debian's Chromium, phone-sized, keyboard first) against real
hub, ingest and stream processes: a topic's schema versions side by side under its compatibility mode, a unitop's
live chart of simulator samples (back-filled from history, zoomed by dragging and by the range inputs), the
sources with their ingest instances and leases, dead letters with replay; what a credential does not allow is
not offered; a hub without the chart library still serves a console that says so. No console error on any page;
screenshots of each under .local/screenshots/."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aio_pika
import httpx
import pytest

from tests.console.browser import SHOTS, console_stack, fits_the_screen, phone_page, sign_in
from tests.support.polling import wait_for
from tests.support.stack import Stack

if TYPE_CHECKING:
    from playwright.sync_api import Page, WebSocket

TOPIC = "console-versions"
UNITOP = "console-pump"
INSTANCE = "console-ingest"
V1 = {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]}
V2 = {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"type": "string"}}, "required": ["value"]}
ITEMS = {
    "flow": {"source": "simulator", "params": {"signal": "sine", "rate_hz": 5, "period_s": 20}},
    "level": {"source": "simulator", "params": {"signal": "ramp", "rate_hz": 5, "period_s": 30}},
}
SPEED = {"speed": {"source": "simulator", "params": {"signal": "sine", "rate_hz": 2, "seed": 3}}}
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    ingest = {
        "TRIBUTARY_INSTANCE_ID": INSTANCE,
        "TRIBUTARY_ENABLED_SOURCES": "simulator",
        "TRIBUTARY_ANNOUNCE_INTERVAL_S": "1",
        "TRIBUTARY_BATCH_MAX_DELAY_S": "0.1",
    }
    with console_stack(
        tmp_path_factory.mktemp("console-views"), ("hub", "ingest", "stream"), {}, {"ingest": ingest}
    ) as s:
        yield s


async def publish_garbage(url: str) -> None:
    """A message the recorder can never store (not JSON), straight to the broker: it becomes a dead letter."""
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("tributary.events")
        await exchange.publish(aio_pika.Message(b"\xff not json", delivery_mode=2), "garbage.console")


@pytest.fixture(scope="module")
def seeded(stack: Stack) -> Iterator[httpx.Client]:
    """A topic with two schema versions, a recorded unitop of two simulator items, and one dead letter."""
    with httpx.Client(base_url=stack.hub_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=30) as http:
        wait_for(lambda: any(s["instances"] for s in http.get("/sources").json()["items"]), 60, "the simulator")
        assert http.post("/topics", json={"name": TOPIC, "schema": V1, "compatibility": "backward"}).status_code == 201
        assert http.put(f"/topics/{TOPIC}/schema", json={"schema": V2}).status_code == 200
        r = http.post("/unitops", json={"name": UNITOP, "items": ITEMS, "record": True, "meta": {"site": "plant1"}})
        assert r.status_code == 201, r.text
        asyncio.run(publish_garbage(stack.env["TRIBUTARY_AMQP_URL"]))
        wait_for(lambda: http.get("/deadletters").json()["items"], 30, "the dead letter")
        yield http


def live_count(page: Page) -> int:
    found = re.match(r"live: (\d+) samples", page.locator("#chart-state").inner_text())
    return int(found.group(1)) if found else -1


def test_operator_views_in_a_browser(stack: Stack, seeded: httpx.Client) -> None:
    from playwright.sync_api import expect

    console = f"{stack.hub_url}/console/"
    samples_frames: list[dict[str, Any]] = []
    with phone_page() as (page, errors):

        def watch(ws: WebSocket) -> None:
            def received(payload: str | bytes) -> None:
                frame = json.loads(payload)
                if frame.get("type") == "samples":
                    samples_frames.append(frame)

            ws.on("framereceived", received)

        page.on("websocket", watch)
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        sign_in(page, console, stack.token)

        # The sections in tab order, each link showing its focus; Enter follows a link.
        page.focus("nav a[data-view=topics]")
        order = [page.evaluate("document.activeElement.dataset.view")]
        for _ in range(5):
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.dataset.view"))
            assert page.evaluate("document.activeElement.matches(':focus-visible')")
        assert order == ["topics", "tail", "history", "unitops", "sources", "deadletters"]

        # Schema versions side by side, the newest two by default, under the compatibility mode.
        page.locator("#topic-list button", has_text=TOPIC).click()
        expect(page.locator("#versions-compat")).to_contain_text("compatibility backward")
        expect(page.locator("#versions-compat")).to_contain_text("2 versions")
        expect(page.locator("#v-left")).to_have_value("1")
        expect(page.locator("#v-right")).to_have_value("2")
        expect(page.locator("#v-right-json .line.new", has_text='"unit"')).to_have_count(1)
        expect(page.locator("#v-left-json .line.gone")).to_have_count(0)
        left, right = page.locator("#v-left-json .line"), page.locator("#v-right-json .line")
        assert left.count() == right.count()  # aligned: each line faces its counterpart or an empty slot
        page.screenshot(path=SHOTS / "versions.png", full_page=True)
        assert fits_the_screen(page)
        page.focus("#v-left")
        page.keyboard.press("ArrowDown")  # the left select to version 2: nothing differs
        expect(page.locator("#v-left")).to_have_value("2")
        expect(page.locator("#v-right-json .line.new")).to_have_count(0)

        # A unitop's live chart: history, then samples over the websocket.
        page.focus("nav a[data-view=unitops]")
        page.keyboard.press("Enter")
        page.locator("#unitop-list button", has_text=UNITOP).click()
        expect(page.locator("#unitop-title")).to_be_focused()
        expect(page.locator("#unitop-items tbody tr")).to_have_count(2)
        expect(page.locator("#chart canvas")).to_be_visible()
        expect(page.locator("#chart-state")).to_have_text(re.compile(r"^live: \d+ samples of 2 items$"))
        first = live_count(page)

        def saw(items: set[str]) -> bool:
            page.wait_for_timeout(100)  # Playwright hands over the frames it received only while it is called
            return items <= {f["item"] for f in samples_frames}

        wait_for(lambda: saw({"flow", "level"}), 30, "samples of both items over the websocket")
        wait_for(lambda: live_count(page) > first + 10, 30, "live samples on the chart")
        assert all(f["unitop"] == UNITOP for f in samples_frames)
        page.screenshot(path=SHOTS / "unitops.png", full_page=True)
        assert fits_the_screen(page)
        # The unitop changes: the stream says so, and the chart follows its new items.
        body = {"name": UNITOP, "items": {**ITEMS, **SPEED}, "record": True, "meta": {"site": "plant1"}}
        assert seeded.put(f"/unitops/{UNITOP}", json=body).status_code == 200
        expect(page.locator("#chart-state")).to_contain_text("samples of 3 items")
        expect(page.locator("#chart .u-legend")).to_contain_text("speed")
        wait_for(lambda: saw({"speed"}), 30, "the new item's samples")

        # Zoom: a drag across the chart shows that range, re-queried from history.
        page.locator("#chart").scroll_into_view_if_needed()
        over = page.locator("#chart .u-over").bounding_box()
        assert over is not None
        page.mouse.move(over["x"] + over["width"] * 0.1, over["y"] + over["height"] / 2)
        page.mouse.down()
        page.mouse.move(over["x"] + over["width"] * 0.9, over["y"] + over["height"] / 2, steps=5)
        page.mouse.up()
        ranged = re.compile(r"^range \S+ – \S+: [1-9]\d* samples")
        expect(page.locator("#chart-state")).to_have_text(ranged)
        expect(page.locator("#c-live")).to_have_attribute("aria-pressed", "false")
        page.focus("#c-live")
        page.keyboard.press("Enter")
        expect(page.locator("#chart-state")).to_contain_text("live: ")
        # The range inputs, with Enter: the last half minute that has surely been recorded. It must end some seconds
        # after recording began: on a fast machine this point comes ~3 s after the unitop was created.
        created = datetime.fromisoformat(seeded.get(f"/unitops/{UNITOP}").json()["created_at"].replace("Z", "+00:00"))
        page.wait_for_timeout(max(0.0, (created + timedelta(seconds=6) - datetime.now(UTC)).total_seconds()) * 1000)
        end = datetime.now(UTC) - timedelta(seconds=3)
        page.fill("#c-start", (end - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%S"))
        page.fill("#c-end", end.strftime("%Y-%m-%dT%H:%M:%S"))
        page.press("#c-end", "Enter")
        expect(page.locator("#chart-state")).to_have_text(ranged)
        # History comes from the plot read (first/last/min/max per interval), never from raw pages.
        history = [u for u in requested if f"/unitops/{UNITOP}/samples" in u]
        assert history and all("/samples:plot?" in u and "intervals=" in u for u in history), history
        # A range that ends before it starts is refused at the form, with why.
        page.fill("#c-end", (end - timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S"))
        page.press("#c-end", "Enter")
        expect(page.locator("#chart-state")).to_have_text("the range's end must be after its start")
        page.click("#c-live")
        expect(page.locator("#chart-state")).to_contain_text("live: ")

        # Sources: the simulator, its instance and the leases of the unitop's three items.
        page.click("nav a[data-view=sources]")
        row = page.locator("#sources-table tbody tr", has_text=INSTANCE)
        expect(row).to_have_count(1)
        expect(row.locator("td").first).to_have_text("simulator")

        def three_leases() -> bool:
            page.click("#sources-refresh")
            return row.locator("td").nth(2).inner_text() == "3"

        wait_for(three_leases, 30, "three leases announced", interval=0.5)
        page.screenshot(path=SHOTS / "sources.png", full_page=True)
        assert fits_the_screen(page)
        # Back on the unitop: its chart stopped following while away, and "Live" follows again.
        page.click("nav a[data-view=unitops]")
        expect(page.locator("#chart-state")).to_have_text("paused while the view was left: Live follows again")
        expect(page.locator("#c-live")).to_have_attribute("aria-pressed", "false")
        page.click("#c-live")
        expect(page.locator("#chart-state")).to_have_text(re.compile(r"^live: \d+ samples of 3 items$"))

        # Dead letters: listed, one replayed (it fails again: a new letter).
        page.click("nav a[data-view=deadletters]")
        rows = page.locator("#dl-table tbody tr")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("undecodable")
        rows.first.get_by_role("button").click()
        expect(page.locator("#status")).to_contain_text("replayed")
        expect(rows.first.locator("td").nth(6)).to_contain_text("1 (last ")

        def two_letters() -> bool:
            page.click("#dl-form button[type=submit]")
            return rows.count() == 2

        wait_for(two_letters, 30, "the replay's own dead letter", interval=0.5)
        page.screenshot(path=SHOTS / "deadletters.png", full_page=True)
        assert fits_the_screen(page)

        # A credential without admin is not offered dead letters, even by their address.
        page.click("#signout")
        viewer = stack.mint(subject="viewer", scopes=["unitops:read"])
        sign_in(page, f"{console}#deadletters", viewer)
        expect(page.locator("nav a:visible")).to_have_text(["Unitops", "Sources"])
        expect(page.locator("#view-deadletters")).to_be_hidden()
        expect(page.locator("#view-unitops")).to_be_visible()
    assert errors == [], errors


def test_without_the_chart_library_the_console_says_so(stack: Stack, seeded: httpx.Client) -> None:
    """A dev checkout without `make console`: the hub says so in config.json and the console never asks for it."""
    from playwright.sync_api import expect

    config = httpx.get(f"{stack.hub_url}/console/config.json").json()
    asked: list[str] = []
    with phone_page() as (page, errors):
        page.route("**/console/config.json", lambda route: route.fulfill(json={**config, "chart": False}))
        page.on("request", lambda r: asked.append(r.url))
        sign_in(page, f"{stack.hub_url}/console/#unitops", stack.token)
        page.locator("#unitop-list button", has_text=UNITOP).click()
        expect(page.locator("#chart-state")).to_contain_text("no chart: the chart library is not installed")
        items = seeded.get(f"/unitops/{UNITOP}").json()["items"]
        expect(page.locator("#unitop-items tbody tr")).to_have_count(len(items))  # the rest of the view works
        assert page.locator("#chart canvas").count() == 0
    assert not [u for u in asked if "/vendor/" in u], asked
    assert errors == [], errors

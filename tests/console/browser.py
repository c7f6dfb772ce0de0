"""The console's tests: a stack whose hub console knows the stream; Debian's Chromium under Playwright, a phone-sized page that records every console
error and uncaught exception, and where screenshots go (.local/screenshots/, for review)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support import platform
from tests.support.stack import Stack, run_stack

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parents[2] / ".local" / "screenshots"
PHONE = {"width": 390, "height": 844}


@contextlib.contextmanager
def console_stack(
    logs: Path, services: tuple[str, ...], env: dict[str, str], per_service: dict[str, dict[str, str]] | None = None
) -> Iterator[Stack]:
    """`run_stack` with the hub's console pointed at the stream (whose port is chosen first for that)."""
    stream_port = platform.free_port()
    per = per_service or {}
    wiring = {
        "hub": {**per.get("hub", {}), "TRIBUTARY_CONSOLE_STREAM_URL": f"ws://127.0.0.1:{stream_port}"},
        "stream": {**per.get("stream", {}), "TRIBUTARY_HTTP_PORT": str(stream_port)},
    }
    with run_stack(logs, services=services, env=env, per_service={**per, **wiring}) as s:
        yield s


def chromium_path() -> str:
    found = shutil.which("chromium") or (CHROMIUM if Path(CHROMIUM).exists() else None)
    if not found:
        pytest.fail("Chromium not found at /usr/bin/chromium: run `make tools` (installs Debian's chromium)")
    return found


@contextlib.contextmanager
def phone_page() -> Iterator[tuple[Page, list[str]]]:
    """A fresh phone-sized page and the list its console errors and uncaught exceptions are appended to."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        try:
            context = browser.new_context(viewport=PHONE, accept_downloads=True)  # type: ignore[arg-type]
            context.set_default_timeout(15_000)
            page = context.new_page()
            page.on(
                "console",
                lambda m: errors.append(f"console: {m.text} @ {m.location['url']}") if m.type == "error" else None,
            )
            page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
            yield page, errors
        finally:
            browser.close()


def sign_in(page: Page, url: str, credential: str) -> None:
    """Sign in with the keyboard only: the field has the focus, Enter submits."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.locator("#credential")).to_be_focused()
    page.keyboard.type(credential)
    page.keyboard.press("Enter")
    expect(page.locator("#who")).to_be_visible()


def fits_the_screen(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))

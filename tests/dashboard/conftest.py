"""A real browser for the dashboard tests: Debian's Chromium driven by Playwright.

Never ``playwright install`` (it downloads a browser build; this project installs Chromium from
the distribution). When Chromium is missing, the session fixture installs it if it runs as root
(as CI does), and otherwise fails with the command to run: these tests are never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.dashboard.dashboard_helpers import ensure_chromium

# Without the background-networking flags Chromium keeps calling home, and a closed network
# refuses those connections loudly.
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000  # the longest any step may take before the test fails (no step sleeps)


@pytest.fixture(scope="session")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="session")
def browser(chromium: str) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                             args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh tab (own storage); any JavaScript error on it fails the test. A test marked
    ``refused_requests`` expects the server to refuse some of its requests with a 400 (a bad
    filter typed into the page): Chromium logs those as console errors, which it may."""
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    errors: list[str] = []
    allowed = ["401"] + (["status of 400"] if request.node.get_closest_marker(
        "refused_requests") else [])
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on("console", lambda message: errors.append(f"console: {message.text}")
            if message.type == "error" and not any(a in message.text for a in allowed)
            else None)
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors

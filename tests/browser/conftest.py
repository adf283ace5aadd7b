"""The demo in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright's Python package, against `payengine demo` running as a process on a fresh database.

These tests never skip: without Chromium they fail and say how to install it (`make test` and
.ci/run install it themselves). Playwright's own browser downloads are never used.

Every request a page makes is checked: one to any host but the demo's own fails the test (the
pages must work offline, with no CDN). Screenshots land in `.artifacts/browser/` (or
$PAYENGINE_ARTIFACTS_DIR), at 1280x800 and at 390 px wide.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import pgfixtures
from tests.web.test_serve_process import Process, _free_port

CHROMIUM = os.environ.get("PAYENGINE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("PAYENGINE_ARTIFACTS_DIR", ".artifacts")) / "browser"
#: How long a page may take to show what the engine committed (the engine takes milliseconds;
#: the machine may be loaded).
UI_TIMEOUT_MS = 15_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str:
    found = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if found is None:
        pytest.fail(
            f"no Chromium at {CHROMIUM}: install Debian's package (`apt-get install -y chromium`;"
            " `make test` does it) or point PAYENGINE_CHROMIUM at one",
            pytrace=False,
        )
    return found


class Demo:
    def __init__(self, process: Process, base: str) -> None:
        self.process = process
        self.base = base
        self.host = urlsplit(base).netloc


@pytest.fixture(scope="package")
def demo() -> Iterator[Demo]:
    dsn, name = pgfixtures.create_database_sync("embedded")
    port = _free_port()
    process = Process(["demo", "--no-narration", "--port", str(port)], dsn)
    try:
        process.wait_for(f"payengine demo on http://127.0.0.1:{port}")
        yield Demo(process, f"http://127.0.0.1:{port}")
        assert process.stop() == 0, "\n".join(process.lines)
    finally:
        process.kill()
        pgfixtures.drop_database_sync("embedded", name)


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    """Playwright and Chromium for this package's tests only: between its sync calls Playwright
    marks its own asyncio loop as this thread's running loop, which breaks every trio_asyncio
    test that runs while it lives (the store's, the CLI's)."""
    from playwright.sync_api import sync_playwright

    path = chromium_path()
    # trio_asyncio (imported by payengine) installs its own event loop policy; Playwright's
    # sync API needs a plain asyncio loop, which it makes when it starts.
    policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        playwright = sync_playwright().start()
    finally:
        asyncio.set_event_loop_policy(policy)
    try:
        browser = playwright.chromium.launch(
            executable_path=path, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            browser.close()
    finally:
        playwright.stop()
        asyncio._set_running_loop(None)  # what Playwright marked, whatever stop() left


class Pages:
    """A browser context on the demo that refuses (and records) every request to another
    host."""

    def __init__(self, browser: object, demo: Demo, viewport: dict[str, int]) -> None:
        self.demo = demo
        self.foreign: list[str] = []
        self.context = browser.new_context(  # type: ignore[attr-defined]
            viewport=viewport, base_url=demo.base
        )
        self.context.set_default_timeout(UI_TIMEOUT_MS)
        self.context.route("**/*", self._route)

    def _route(self, route: object) -> None:
        url = route.request.url  # type: ignore[attr-defined]
        parts = urlsplit(url)
        if parts.scheme in ("data", "about", "blob") or parts.netloc == self.demo.host:
            route.continue_()  # type: ignore[attr-defined]
        else:
            self.foreign.append(url)
            route.abort()  # type: ignore[attr-defined]

    def new_page(self) -> object:
        return self.context.new_page()

    def close(self) -> None:
        self.context.close()
        assert self.foreign == [], f"pages requested other hosts: {self.foreign}"


@pytest.fixture
def pages(browser: object, demo: Demo) -> Iterator[Pages]:
    found = Pages(browser, demo, DESKTOP)
    try:
        yield found
    finally:
        found.close()


def screenshot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

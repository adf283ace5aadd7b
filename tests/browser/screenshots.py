"""The README's screenshots: `python -m tests.browser.screenshots URL OUT_DIR` against a
running `payengine demo` (the README says how they were made). One purchase first, so every
page has something to show; 1280x800, the viewport only (small files)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import DESKTOP, chromium_path

PAGES = (("shop", "/"), ("inside", "/inside"), ("money", "/money"), ("tour", "/tour"))


def main(base: str, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport=DESKTOP, base_url=base)
        page.goto("/")
        page.click("#pay")
        page.screenshot(path=str(out / "psp.png"))
        page.click("button[type=submit]")
        page.wait_for_selector("#payment-status[data-status=COMPLETED]")
        page.screenshot(path=str(out / "order.png"))
        for name, path in PAGES:
            page.goto(path)
            page.wait_for_timeout(1500)
            page.screenshot(path=str(out / f"{name}.png"))
        browser.close()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))

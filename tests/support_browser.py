"""Debian's Chromium driven by Playwright, for the tests of the page as a person sees it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from helpers import REPO, missing_on_this_machine

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts"
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "device_scale_factor": 2,
}


def launch_chromium(playwright: Any) -> Any:
    if not CHROMIUM.exists():
        missing_on_this_machine(f"{CHROMIUM} is missing (sudo apt install chromium)")
    ARTIFACTS.mkdir(exist_ok=True)
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# A preview the box was too busy to draw at once (503 with Retry-After, thumbnails' budget):
# the page asks for it again (instafly.js), so it is not a problem of the page.
BUSY_PREVIEW = re.compile(r"/(images|thumbs)/")
BUSY_CONSOLE = "Failed to load resource: the server responded with a status of 503"


def watch_for_problems(page: Any) -> list[str]:
    """Console errors, page errors and failed requests of `page`, collected as they happen
    (but previews answered 503 while the box was busy drawing others: the page retries)."""
    problems: list[str] = []

    def on_console(message: Any) -> None:
        if message.type == "error" and not message.text.startswith(BUSY_CONSOLE):
            problems.append(message.text)

    def on_response(response: Any) -> None:
        if response.status == 503 and BUSY_PREVIEW.search(response.url):
            return
        if response.status >= 400:
            problems.append(f"{response.status} {response.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", on_response)
    return problems


def log_in(page: Any, url: str, password: str) -> None:
    """Open `url`; the page asks for its password first: give it, and land on `url`."""
    page.goto(url, wait_until="networkidle")
    if "/login" in page.url:
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

"""Debian's Chromium driven by Playwright, for the tests of the page as a person sees it."""

from __future__ import annotations

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


def watch_for_problems(page: Any) -> list[str]:
    """Console errors, page errors and failed requests of `page`, collected as they happen."""
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
    return problems


def log_in(page: Any, url: str, password: str) -> None:
    """Open `url`; the page asks for its password first: give it, and land on `url`."""
    page.goto(url, wait_until="networkidle")
    if "/login" in page.url:
        page.fill("#password", password)
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")

"""`instaflyd run` as a real process on temp folders and free ports.

One daemon serves the tests of this module in order: sd_notify, no TensorFlow in the supervisor,
the API, the page in a real browser (desktop and phone), a killed proxy coming back, and last
SIGTERM ending every child within 10 seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, cli_env, free_port, wait_until, write_config
from support_browser import ARTIFACTS, launch_chromium, watch_for_problems
from support_daemon import (
    TEST_PASSWORD,
    RunningDaemon,
    daemon_config,
    give_password,
    http_get,
    running_daemon,
    seed_extras,
    seed_store,
)

from instaflyd.store import Database
from instaflyd.store.events import add_to_counter

pytestmark = pytest.mark.slow


class NotifyListener:
    """A systemd stand-in for the notify side: a real Unix datagram socket, messages collected."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def texts(self) -> list[str]:
        return [text for _, text in self.messages]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture(scope="module")
def notify(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path_factory.mktemp("notify") / "notify.sock")
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def daemon(
    tmp_path_factory: pytest.TempPathFactory, notify: NotifyListener
) -> Iterator[RunningDaemon]:
    tmp = tmp_path_factory.mktemp("run")
    data = tmp / "data"
    seed_store(data, posts=12, owners=4)
    seed_extras(data, data / "drop", data / "enhanced")
    config, web_port, proxy_port = daemon_config(
        tmp,
        data,
        train={"min_labelled_posts": 1000},  # this daemon never trains
    )
    env = cli_env(NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
    with running_daemon(config, data, web_port, proxy_port, env) as running:
        # Without a model the worker parks the queued photo once it has started: wait for that,
        # so that the jobs the tests count do not change under them.
        wait_until(
            lambda: store_numbers(data)["drop_folder.jobs.waiting_model"] == 1,
            60,
            "the worker to park the queued photo",
            process=running.process,
            output=running.output,
        )
        yield running


def store_numbers(data_dir: Path) -> dict[str, int]:
    """The numbers the page must show, counted straight from the SQLite file."""
    conn = sqlite3.connect(data_dir / "instafly.db")
    try:
        numbers = {
            f"capture.totals.{table}": conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("posts", "accounts", "images")
        }
        numbers["capture.totals.labelled"] = conn.execute(
            "SELECT COUNT(*) FROM labelled_posts"
        ).fetchone()[0]
        numbers["capture.totals.flows"] = conn.execute(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name = 'flows'"
        ).fetchone()[0]
        for state in ("queued", "waiting_model", "running", "done", "rejected", "failed"):
            numbers[f"drop_folder.jobs.{state}"] = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)
            ).fetchone()[0]
        return numbers
    finally:
        conn.close()


def add_flows(data_dir: Path, amount: int) -> None:
    with Database(data_dir / "instafly.db") as db, db.transaction() as conn:
        add_to_counter(conn, "flows", amount)


def proxy_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_ready_after_proxy_and_page_listen_then_status_and_watchdog(
    daemon: RunningDaemon, notify: NotifyListener
) -> None:
    ready = wait_until(
        lambda: [m for m in notify.messages if m[1].startswith("READY=1")], 60, "READY=1"
    )
    assert len(ready) == 1
    lines = ready[0][1].split("\n")
    assert lines[0] == "READY=1"
    assert lines[2] == f"MAINPID={daemon.process.pid}"
    status = lines[1]
    assert status.startswith(f"STATUS=proxy on :{daemon.proxy_port} (regular); worker ")
    assert status.endswith("; 13 posts, 12 labelled; no model yet")
    assert proxy_accepts(daemon.proxy_port)
    assert http_get(daemon.url + "/healthz")[0] == 200
    # WATCHDOG_USEC=1 s: a ping at least every half second from the supervisor's loop.
    before = len([t for t in notify.texts() if t == "WATCHDOG=1"])

    def pings_since_ready() -> list[float]:
        pings = [when for when, text in notify.messages if text == "WATCHDOG=1"]
        return pings if len(pings) - before >= 3 else []

    pings = wait_until(pings_since_ready, 10, "three more WATCHDOG=1 pings")
    assert max(b - a for a, b in zip(pings[-4:-1], pings[-3:], strict=True)) < 0.9


def test_the_supervisor_and_the_proxy_never_load_tensorflow(daemon: RunningDaemon) -> None:
    components = wait_until(
        lambda: (
            daemon.status()["components"]["proxy"]["state"] == "running"
            and daemon.status()["components"]
        ),
        60,
        "the proxy",
    )
    for pid in (daemon.process.pid, components["proxy"]["pid"]):
        maps = Path(f"/proc/{pid}/maps").read_text()
        assert "python" in maps
        assert "tensorflow" not in maps, pid


def test_api_status_of_the_running_daemon(daemon: RunningDaemon) -> None:
    # run first (one test of this module per xdist worker), the daemon may still be starting
    status = wait_until(
        lambda: (s := daemon.status())["instafly"]["state"] == "running" and s, 60, "running"
    )
    components = status["components"]
    assert set(components) == {"proxy", "worker", "trainer"}
    assert components["proxy"]["state"] == "running"
    assert components["trainer"]["state"] == "idle"
    assert components["trainer"]["last_check"] == "waiting for 988 more labelled posts (12 so far)"
    numbers = store_numbers(daemon.data_dir)
    assert status["capture"]["totals"] == {
        key.rsplit(".", 1)[1]: value for key, value in numbers.items() if key.startswith("capture.")
    }
    assert status["capture"]["proxy"]["address"] == f"127.0.0.1:{daemon.proxy_port}"
    assert http_get(daemon.url + "/healthz")[0] == 200
    code, metrics = daemon.get("/metrics")
    assert code == 200
    assert 'instafly_component_up{component="proxy"} 1.0' in metrics.decode()


def shown_numbers(page: Any) -> dict[str, int]:
    texts = page.eval_on_selector_all(
        "[data-status]", "els => els.map(e => [e.dataset.status, e.textContent.trim()])"
    )
    return {
        key: int(text.replace(",", "")) for key, text in texts if text.replace(",", "").isdigit()
    }


def check_page(browser: Any, daemon: RunningDaemon, name: str, **options: Any) -> None:
    """Load the page, compare its numbers with the store, save a screenshot; no errors."""
    context = browser.new_context(**options, bypass_csp=True)  # wait_for_function polls by eval
    page = context.new_page()
    problems = watch_for_problems(page)  # previews the box was busy drawing are retried
    page.goto(daemon.url + "/", wait_until="networkidle")
    assert page.url.startswith(daemon.url + "/login")  # the page asks for its password first
    page.fill("#password", TEST_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.title() == "Instafly"
    shown = shown_numbers(page)
    expected = store_numbers(daemon.data_dir)
    assert {key: shown[key] for key in expected} == expected
    assert shown["setup.proxy_port"] == daemon.proxy_port
    assert page.locator("[data-component=proxy]").get_attribute("class") == "pill pill-running"
    assert page.locator(".thumbs img").count() == 6
    assert page.locator(".qr svg").count() == 1
    for image in page.locator("img").all():  # thumbnails load lazily, as they come into view
        image.scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.evaluate("window.scrollTo(0, 0)")
    # Readable on a phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
    page.screenshot(path=str(ARTIFACTS / f"status-{name}.png"), full_page=True)
    # The page refreshes its numbers from /api/status without a reload.
    add_flows(daemon.data_dir, 1000)
    flows = store_numbers(daemon.data_dir)["capture.totals.flows"]
    wait_until(  # the daemon's snapshot takes up to a few seconds to see the new flows
        lambda: (
            page.evaluate("window.instafly.refresh()")
            and shown_numbers(page)["capture.totals.flows"] == flows
        ),
        15,
        "the refreshed flow count",
    )
    assert problems == [], name
    context.close()


@pytest.mark.browser
def test_the_page_in_a_real_browser_desktop_and_phone(daemon: RunningDaemon) -> None:
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            check_page(browser, daemon, "desktop", viewport={"width": 1280, "height": 900})
            check_page(
                browser, daemon, "phone", viewport={"width": 390, "height": 844},
                is_mobile=True, has_touch=True, device_scale_factor=2,
            )  # fmt: skip
        finally:
            browser.close()


def test_a_proxy_killed_with_sigkill_comes_back(daemon: RunningDaemon) -> None:
    before = wait_until(
        lambda: (
            daemon.status()["components"]["proxy"]["state"] == "running"
            and daemon.status()["components"]["proxy"]
        ),
        60,
        "the proxy",
    )
    os.kill(before["pid"], signal.SIGKILL)
    after = wait_until(
        lambda: (
            (c := daemon.status()["components"]["proxy"])["state"] == "running"
            and c["restarts"] == before["restarts"] + 1
            and c
        ),
        30,
        "the proxy's restart",
    )
    assert after["pid"] != before["pid"]
    assert after["last_exit"] == -signal.SIGKILL
    assert proxy_accepts(daemon.proxy_port)
    [event] = wait_until(  # the page's snapshot is a few seconds old at most
        lambda: [
            e
            for e in daemon.status()["capture"]["recent_errors"]
            if (e["component"], e["kind"]) == ("proxy", "exited")
        ],
        10,
        "the proxy's exit on the page",
    )
    assert event["message"].startswith("proxy was killed by signal 9")
    assert event["message"].endswith("; restarting in 1 s")


def test_sigterm_ends_every_child_within_10_seconds(
    daemon: RunningDaemon, notify: NotifyListener
) -> None:
    components = daemon.status()["components"]
    pids = [c["pid"] for c in components.values() if c["pid"]]
    assert components["proxy"]["pid"] in pids
    answers: list[tuple[int, bytes]] = []

    def poll_health() -> None:
        while daemon.process.poll() is None:
            try:
                answers.append(http_get(daemon.url + "/healthz", timeout=1))
            except OSError:
                return
            time.sleep(0.02)

    poller = threading.Thread(target=poll_health)
    poller.start()
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    assert daemon.process.wait(12) == 0
    took = time.monotonic() - started
    poller.join(5)
    assert took < 10
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not proxy_accepts(daemon.proxy_port)
    assert any(text.startswith("STOPPING=1\nSTATUS=stopping") for text in notify.texts())
    # While stopping cleanly the daemon stays healthy.
    for code, body in answers:
        assert code == 200 and json.loads(body)["status"] in ("ok", "stopping")
    assert "SIGTERM received: stopping" in daemon.output()


# --- without the shared daemon ------------------------------------------------------------------


def test_an_invalid_config_serves_the_safe_mode_page_until_fixed(
    tmp_path: Path, notify: NotifyListener
) -> None:
    data = tmp_path / "data"
    web_port = free_port()
    config = write_config(
        tmp_path / "instafly.yaml",
        {
            "data_dir": str(data),
            "web": {"host": "127.0.0.1", "port": web_port},
            "proxy": {"listen_prot": 8080},
            "train": {"epochs": 0},
        },
    )
    listener = NotifyListener(tmp_path / "safe.sock")
    env = cli_env(NOTIFY_SOCKET=str(listener.path))
    try:
        with running_daemon(config, data, web_port, free_port(), env) as daemon:
            code, body = http_get(daemon.url + "/")
            html = body.decode()
            assert code == 503
            assert "The configuration has 2 problems" in html
            assert (
                "line 6: proxy -&gt; listen_prot: unknown key; did you mean &#39;listen_port&#39;?"
                in html
            )
            assert "train -&gt; epochs: must be from 1 to 1000 (got 0)" in html
            assert str(config) in html
            code, body = http_get(daemon.url + "/healthz")
            assert code == 503 and json.loads(body)["status"] == "safe_mode"
            ready = wait_until(lambda: listener.texts(), 5, "READY")[0]
            assert ready.startswith("READY=1\nSTATUS=safe mode, the config is invalid: ")
            assert not (data / "instafly.db").exists()  # nothing else started
            time.sleep(1.5)
            assert daemon.process.poll() is None  # no crash loop: it waits

            # Fixed: the daemon starts for real, without a restart.
            give_password(data)
            write_config(
                config,
                {
                    "data_dir": str(data),
                    "web": {"host": "127.0.0.1", "port": web_port},
                    "proxy": {"listen_host": "127.0.0.1", "listen_port": free_port()},
                    "train": {"min_labelled_posts": 1000},
                    "model": {"weights": "none"},  # never a download from the internet
                },
            )
            status = wait_until(
                lambda: daemon.get("/api/status")[0] == 200 and daemon.status(),
                20,
                "the real status page",
            )
            assert set(status["components"]) == {"proxy", "worker", "trainer"}
            assert "the config is valid now: starting" in daemon.output()
            # The supervisor, with its page, scheduler and children running, has no TensorFlow.
            maps = Path(f"/proc/{daemon.process.pid}/maps").read_text()
            assert "_sqlite3" in maps  # the store is open: this is the running supervisor
            assert "tensorflow" not in maps
            assert daemon.stop() == 0
    finally:
        listener.close()


def test_a_busy_web_port_fails_with_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config, _, _ = daemon_config(tmp_path, tmp_path / "data", web={"port": port})
        result = subprocess.run(
            [sys.executable, "-m", "instaflyd", "--config", str(config), "run"],
            capture_output=True, text=True, timeout=60, env=cli_env(), cwd=REPO,
        )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last == (
        f"instaflyd: the status page cannot listen on 127.0.0.1:{port}: Address already in use;"
        " stop whatever uses the port or set web.port in the config"
    )

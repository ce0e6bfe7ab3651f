"""The status page for tests that attack or use it over real sockets: its config, the real
app served in-process by the real waitress set-up, and a browser logged in through the form.

Shared by the page's budget tests (connections, uploads, thumbnails), its security tests and
the WireGuard set-up page's tests; `support_page.page_process` runs the same page in a process
of its own where a test measures the page's memory or files.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

import requests
from helpers import free_port, write_config
from support_daemon import TEST_PASSWORD, give_password

from instaflyd.config import Config
from instaflyd.web import create_app
from instaflyd.web.server import WebServer


def page_config(tmp_path: Path, **web: object) -> Path:
    """A config file for the page alone (loopback, a free port, the test password set, a tiny
    model), with `web` keys on top."""
    data_dir = tmp_path / "data"
    give_password(data_dir)
    values = {
        "data_dir": str(data_dir),
        "web": {"host": "127.0.0.1", "port": free_port(), **web},
        "model": {"input_size": 64, "weights": "none"},
        "watch": {"drop_dir": "drop", "output_dir": "enhanced"},
    }
    return write_config(tmp_path / "instafly.yaml", values)


@contextlib.contextmanager
def serving(config: Config, host: str = "127.0.0.1") -> Iterator[WebServer]:
    """The real app on the real server, on `host` (loopback) and a free port, in this process."""
    web = WebServer(create_app(config), host, 0)
    web.start()
    try:
        yield web
    finally:
        web.stop()


def form_token(session: requests.Session, url: str) -> str:
    """The CSRF token of the form on the page at `url`."""
    found = re.search(r'name="csrf_token" value="([^"]+)"', session.get(url).text)
    assert found, url
    return found.group(1)


def page_token(session: requests.Session, url: str) -> str:
    """The CSRF token the page at `url` gives its scripts (its meta tag)."""
    found = re.search(r'name="csrf-token" content="([^"]+)"', session.get(url).text)
    assert found, url
    return found.group(1)


def log_in(base: str, password: str = TEST_PASSWORD, origin: bool = True) -> requests.Session:
    """A browser that logged in through the form (same-origin when `origin`), one session, so
    its concurrent requests are not password guesses."""
    session = requests.Session()
    if origin:
        session.headers["Origin"] = base
    answer = session.post(
        base + "/login",
        data={"password": password, "csrf_token": form_token(session, base + "/login")},
        allow_redirects=False,
    )
    assert answer.status_code == 302, answer.text
    return session


def logged_in(base: str) -> requests.Session:
    """A logged-in browser whose scripts' requests carry the CSRF token (X-CSRF-Token)."""
    session = log_in(base)
    session.headers["X-CSRF-Token"] = page_token(session, base + "/")
    return session

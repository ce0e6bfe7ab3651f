"""Helpers for the daemon and status-page tests: a seeded store, a running `instaflyd run`."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import REPO, cli_env, free_port, jpeg_bytes, wait_until, write_config

from instaflyd.store import AccountRecord, Database, ImageFiles, PostRecord
from instaflyd.store.events import add_to_counter, log_event
from instaflyd.store.formats import count_unread_format
from instaflyd.store.images import record_image
from instaflyd.store.jobs import enqueue_job, finish_job
from instaflyd.store.posts import attach_image, upsert_post
from instaflyd.store.tls import count_tls_failure
from instaflyd.web.password import set_password

# The status page always has a password: the daemons the tests start get this one, kept the way
# `instaflyd password` keeps it (a scrypt hash in the data dir).
TEST_PASSWORD = "test-password-4821"


def give_password(data_dir: Path, password: str = TEST_PASSWORD) -> None:
    set_password(data_dir, password)


def basic_auth(password: str = TEST_PASSWORD, user: str = "instafly") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def seed_store(data_dir: Path, posts: int = 12, owners: int = 4, start: int = 0) -> None:
    """Labelled photo posts with real image files, spread over `owners` accounts."""
    images = ImageFiles(data_dir / "images")
    with Database(data_dir / "instafly.db") as db, db.transaction() as conn:
        for n in range(start, start + posts):
            owner = AccountRecord(f"{900 + n % owners}", f"user{n % owners}", None, 1000 + n)
            post = PostRecord(
                f"{5000 + n}", "photo", f"code{n}", owner, 10 + 7 * n, 1, 1_600_000_000 + n,
                [f"https://scontent.cdninstagram.com/v/{5000 + n}_1_n.jpg"], "test",
            )  # fmt: skip
            upsert_post(conn, post, now=1_700_000_000 + n)
            stored = images.put(jpeg_bytes(96, 96, n), "jpg")
            record_image(conn, stored, 96, 96, len(jpeg_bytes(96, 96, n)))
            attach_image(conn, post.id, stored.sha256)


UNREAD_SHAPE = "data.xdt_new_grid.items[].media_v2: display_url,shortcode"


def seed_extras(data_dir: Path, drop_dir: Path, output_dir: Path) -> dict[str, Any]:
    """A video post, counters, TLS failures, a format not understood, an error event and jobs in
    several states."""
    drop_dir.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    with Database(data_dir / "instafly.db") as db, db.transaction() as conn:
        video = PostRecord("7777", "video", "vid", AccountRecord("900"), 5)
        upsert_post(conn, video, now=1_699_999_000)
        add_to_counter(conn, "flows", 321)
        for _ in range(3):
            count_tls_failure(conn, "i.instagram.com", "client does not trust the proxy's CA")
        count_tls_failure(conn, "graph.instagram.com", "certificate pinned")
        for seen in (1_699_999_100, 1_699_999_200):
            count_unread_format(conn, "/api/v1/feed/user/123/?max_id=9", UNREAD_SHAPE, seen)
        log_event(conn, "proxy", "error", "test", "upstream certificate verify failed for x.test")
        photo = drop_dir / "beach.jpg"
        photo.write_bytes(jpeg_bytes(200, 200, 101))
        done = enqueue_job(conn, str(photo), "sha-beach")
        enhanced = output_dir / "beach.instafly.jpg"
        enhanced.write_bytes(jpeg_bytes(200, 200, 102))
        finish_job(
            conn, done, "done", output_path=str(enhanced), score_before=-2.5, score_after=-2.1
        )
        broken = drop_dir / "broken.jpg"
        broken.write_bytes(b"not a jpeg")
        failed = enqueue_job(conn, str(broken), "sha-broken")
        finish_job(conn, failed, "rejected", reason="not an image Pillow can read")
        waiting = drop_dir / "waiting.jpg"
        waiting.write_bytes(jpeg_bytes(150, 150, 103))
        enqueue_job(conn, str(waiting), "sha-waiting")
    return {"done": done, "rejected": failed}


def http_get(
    url: str, timeout: float = 5, password: str | None = None, **headers: str
) -> tuple[int, bytes]:
    """GET `url`; with `password`, as a script would: HTTP basic auth."""
    if password is not None:
        headers = {**headers, **basic_auth(password)}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@dataclass
class RunningDaemon:
    """`instaflyd run` as a real process, its output collected line by line."""

    process: subprocess.Popen[str]
    config: Path
    data_dir: Path
    web_port: int
    proxy_port: int
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def status(self) -> dict[str, Any]:
        code, body = self.get("/api/status")
        assert code == 200, body
        return json.loads(body)

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """GET a page that needs the password, with TEST_PASSWORD as HTTP basic auth."""
        return http_get(self.url + path, timeout, password=TEST_PASSWORD)

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode


def daemon_config(tmp: Path, data_dir: Path, **sections: dict[str, Any]) -> tuple[Path, int, int]:
    """A config for `instaflyd run` on free loopback ports; returns (path, web port, proxy port)."""
    web_port, proxy_port = free_port(), free_port()
    values: dict[str, Any] = {
        "data_dir": str(data_dir),
        "proxy": {"listen_host": "127.0.0.1", "listen_port": proxy_port},
        "web": {"host": "127.0.0.1", "port": web_port},
        "model": {"input_size": 64, "weights": "none"},
        "watch": {"drop_dir": "drop", "output_dir": "enhanced", "settle_seconds": 0.3},
    }
    for name, overrides in sections.items():
        values[name] = {**values.get(name, {}), **overrides}
    give_password(data_dir)
    return write_config(tmp / "instafly.yaml", values), web_port, proxy_port


@contextlib.contextmanager
def running_daemon(
    config: Path,
    data_dir: Path,
    web_port: int,
    proxy_port: int,
    env: dict[str, str] | None = None,
    wrapper: list[str] | None = None,
    instaflyd: list[str] | None = None,
    cwd: Path = REPO,
) -> Iterator[RunningDaemon]:
    """Start `instaflyd run` in its own process group; always stopped (and reaped) at the end.

    `wrapper` is a command to run it under (such as support_hardening.py's sandbox);
    `instaflyd` the command itself (default: this checkout's, with the tests' Python).
    """
    command = instaflyd or [sys.executable, "-m", "instaflyd"]
    process = subprocess.Popen(
        [*(wrapper or []), *command, "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env or cli_env(),
        cwd=cwd,
        start_new_session=True,
    )
    daemon = RunningDaemon(process, config, data_dir, web_port, proxy_port)
    assert process.stdout is not None
    reader = threading.Thread(
        target=lambda: daemon.lines.extend(line.rstrip("\n") for line in process.stdout),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    try:
        # 200 from the daemon, 503 from the safe-mode page: either way, it answers.
        wait_until(
            lambda: http_get(daemon.url + "/healthz")[0] in (200, 503), 30, "the status page"
        )
        yield daemon
    finally:
        daemon.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # anything left in its group
        reader.join(5)

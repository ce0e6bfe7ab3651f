"""Real faults for tests: a small tmpfs that fills up, a read-only bind mount.

`fill` fills to the last byte unless told to leave some; `remount` switches a read-only bind
mount to writable and back while it stays mounted (a card that heals); `logged_in` is the page
without the daemon, logged in. Mounts are undone in each context manager's teardown, also when
the test fails. Mounting needs the right to mount (root, as in CI's container); without it the test is skipped, or
fails under INSTAFLY_STRICT=1.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from mitmproxy import http, io
from support_capture import SAMPLE_DUMP
from support_daemon import TEST_PASSWORD, give_password

from instaflyd.capture.flows import CapturedResponse, captured_response
from instaflyd.config import Config
from instaflyd.web import create_app


def _mount(*argv: str) -> None:
    result = subprocess.run(["mount", *argv], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        message = f"cannot mount ({' '.join(argv)}): {result.stderr.strip()}"
        if os.environ.get("INSTAFLY_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def small_tmpfs(target: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of `megabytes` MB mounted on `target` (created) for the block."""
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={megabytes}m,mode=0755", "tmpfs", str(target))
    try:
        yield target
    finally:
        _umount(target)


@contextlib.contextmanager
def read_only(target: Path) -> Iterator[Path]:
    """`target` bind-mounted read-only on itself for the block (writable again after it)."""
    _mount("--bind", str(target), str(target))
    try:
        _mount("-o", "remount,ro,bind", str(target))
        yield target
    finally:
        _umount(target)


def remount(target: Path, writable: bool) -> None:
    """Make the bind mount at `target` (from `read_only`) writable or read-only again."""
    _mount("-o", f"remount,{'rw' if writable else 'ro'},bind", str(target))


def fill(folder: Path, leave_bytes: int = 0) -> Path:
    """Fill the file system of `folder` up to `leave_bytes` free (0: to the last byte, as a
    full disk is); returns the filler file."""
    filler = folder / "filler.bin"
    stats = os.statvfs(folder)
    size = max(0, stats.f_bavail * stats.f_frsize - leave_bytes)
    with filler.open("wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while size >= chunk:
                    size -= out.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def logged_in(config: Config) -> FlaskClient:
    """The page (without the daemon: it builds the status itself), logged in."""
    give_password(config.data_dir)
    client = create_app(config).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    login = client.post("/login", data={"password": TEST_PASSWORD, "csrf_token": token})
    assert login.status_code == 302
    return client


def sample_responses(max_body_bytes: int) -> list[CapturedResponse]:
    """The sample session's responses, the profile page (20 posts) first."""
    with SAMPLE_DUMP.open("rb") as handle:
        flows = [f for f in io.FlowReader(handle).stream() if isinstance(f, http.HTTPFlow)]
    responses = [r for f in flows if (r := captured_response(f, max_body_bytes)) is not None]
    [profile] = [r for r in responses if "web_profile_info" in r.path]
    return [profile] + [r for r in responses if r is not profile]

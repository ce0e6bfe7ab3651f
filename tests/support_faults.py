"""Fault test support: real faults for the store, injected by the kernel, always cleaned up.

`small_disk` mounts a tmpfs of a few megabytes (a full SD card), `fill` fills it to the last
page, `read_only_bind` shows a folder through a read-only bind mount (a card the kernel
remounted read-only). Each context manager unmounts in its teardown, also when the test fails,
and lazily when something still holds a file there. They need root; without it the test is
skipped (failed under INSTAFLY_STRICT=1).
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from flask.testing import FlaskClient
from helpers import missing_on_this_machine
from support_daemon import TEST_PASSWORD, give_password

from instaflyd.config import Config
from instaflyd.web import create_app


def _mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise OSError(f"mount {' '.join(args)}: {result.stderr.strip()}")


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _need_root() -> None:
    if os.geteuid() != 0:
        missing_on_this_machine("mounting a tmpfs or a bind mount needs root")


@contextlib.contextmanager
def small_disk(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of `size_bytes` at `path` (created), unmounted at the end."""
    _need_root()
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_bytes},mode=0750", "tmpfs", str(path))
    try:
        yield path
    finally:
        _unmount(path)


def fill(folder: Path, name: str = "filler") -> Path:
    """Fill the file system under `folder` to its last byte; returns the filler file."""
    filler = folder / name
    with filler.open("wb", buffering=0) as handle:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


@contextlib.contextmanager
def read_only_bind(source: Path, target: Path) -> Iterator[Path]:
    """`source` seen read-only at `target` (created); `writable(target)`/`read_only(target)`
    switch it while it stays mounted. Unmounted at the end."""
    _need_root()
    target.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(target))
    try:
        read_only(target)
        yield target
    finally:
        _unmount(target)


def read_only(target: Path) -> None:
    _mount("-o", "remount,bind,ro", str(target))


def writable(target: Path) -> None:
    _mount("-o", "remount,bind,rw", str(target))


def logged_in(config: Config) -> FlaskClient:
    """The page (without the daemon: it builds the status itself), logged in."""
    give_password(config.data_dir)
    client = create_app(config).test_client()
    page = client.get("/login").get_data(as_text=True)
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    login = client.post("/login", data={"password": TEST_PASSWORD, "csrf_token": token})
    assert login.status_code == 302
    return client

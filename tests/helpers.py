"""Helpers shared by the tests: run the real `instaflyd` command, write configs, find ports,
wait for something to happen, make test photos."""

from __future__ import annotations

import fcntl
import io
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import numpy as np
import pytest
import yaml
from PIL import Image

if TYPE_CHECKING:
    from instaflyd.store import Database

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
T = TypeVar("T")
# What a condition may raise while the thing it reads is not there yet (a file, a table, a key,
# a port that does not answer yet): it counts as "not yet", and the last one is reported.
NOT_YET = (OSError, ValueError, KeyError, sqlite3.Error)


def free_port() -> int:
    """A loopback port, TCP and UDP, that nothing uses and no other test process will take.

    A port the kernel picks (bind to port 0) comes from its ephemeral range, from which it also
    picks the source port of every outgoing connection: closing it and handing the number to a
    server started later races with every socket on the machine, and with the other xdist
    worker. These ports come from just below that range, where the kernel never picks, and each
    is claimed with a lock file that this process holds until it exits.
    """
    low = _ephemeral_low()
    candidates = list(range(max(1024, low - 10_000), low))
    start = random.randrange(len(candidates))
    _PORT_LOCKS.mkdir(exist_ok=True)
    for port in candidates[start:] + candidates[:start]:
        lock = (_PORT_LOCKS / str(port)).open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:  # claimed by another test process, or in use
            lock.close()
            continue
        _HELD_PORTS.append(lock)
        return port
    raise AssertionError(f"no free port below {low}")


_PORT_LOCKS = Path(tempfile.gettempdir()) / "instafly-test-ports"
_HELD_PORTS: list[IO[str]] = []  # open until the process exits: the claims


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 unless configured otherwise)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def wait_until(
    condition: Callable[[], T],
    timeout: float,
    what: str,
    *,
    process: subprocess.Popen[Any] | None = None,
    output: Callable[[], str] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll `condition` until it returns something true, and return that.

    The one way the tests wait for another process or thread: a timeout says what was awaited
    (and the last error the condition raised); if `process` exits first it fails at once.
    `output` (a process's log, say) is added to either message.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = condition()
        except NOT_YET as exc:
            last_error = exc
        else:
            if value:
                return value
        if process is not None and process.poll() is not None:
            problem = f"the process exited with {process.returncode} while waiting for {what}"
            break
        if time.monotonic() >= deadline:
            problem = f"timed out after {timeout:g} s waiting for {what}"
            if last_error is not None:
                problem += f" (last error: {last_error!r})"
            break
        time.sleep(interval)
    if output is not None:
        problem += ":\n" + output()[-5000:]
    raise AssertionError(problem)


def photo(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    """A photo-like test picture: colour gradients with sensor-like noise that differs per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xx * 200 // width, yy * 200 // height, (xx + yy) * 100 // (width + height)], -1
    )
    pixels = np.clip(base + rng.normal(0, 8, base.shape) + 30, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).convert(mode)


def jpeg_bytes(width: int, height: int, seed: int = 0, **options: Any) -> bytes:
    """`photo(width, height, seed)` as a real JPEG file's bytes (Pillow save `options`)."""
    out = io.BytesIO()
    photo(width, height, seed).save(out, "JPEG", **{"quality": 90, **options})
    return out.getvalue()


def write_config(path: Path, values: dict[str, Any]) -> Path:
    """Write `values` as a YAML config file and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return path


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a child `instaflyd`: no user or system config leaks in."""
    env = {key: value for key, value in os.environ.items() if key != "INSTAFLY_CONFIG"}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env.update(extra)
    return env


def run_cli(
    *args: str | Path,
    config: Path | None = None,
    data_dir: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m instaflyd [--config C] [--data-dir D] ARGS...` as a real process."""
    command: list[str] = [sys.executable, "-m", "instaflyd"]
    if config is not None:
        command += ["--config", str(config)]
    if data_dir is not None:
        command += ["--data-dir", str(data_dir)]
    command += [str(arg) for arg in args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        input=input,
        cwd=REPO,
    )


def run_cli_json(*args: str | Path, **kwargs: Any) -> Any:
    """Run a --json command, check it succeeded, and return its one JSON document."""
    result = run_cli(*args, **kwargs)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr}"
    return json.loads(result.stdout)


def missing_on_this_machine(reason: str) -> None:
    """Skip a test whose tool or privilege this machine lacks; in CI (INSTAFLY_STRICT=1) fail.

    CI installs everything through ./install.sh and runs as root, so there a skip would only
    hide a test that should have run.
    """
    if os.environ.get("INSTAFLY_STRICT") == "1":
        pytest.fail(f"{reason} (INSTAFLY_STRICT=1: CI must run every test)")
    pytest.skip(reason)


# Reading the store in a test: plain SQL through the Database's connection (the package's own
# code reads through instaflyd.store's functions, never these).
def sql_one(db: Database, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
    row: sqlite3.Row | None = db.conn.execute(sql, params).fetchone()
    return row


def sql_all(db: Database, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    return db.conn.execute(sql, params).fetchall()


def sql_scalar(db: Database, sql: str, params: Sequence[Any] = ()) -> Any:
    row = sql_one(db, sql, params)
    return None if row is None else row[0]


def maps_library(pid: int, name: str) -> bool:
    """Whether a file whose path contains `name` is mapped into the process (e.g. tensorflow)."""
    try:
        return name in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False

"""Helpers shared by the tests: run the real `instaflyd` command, write configs, find ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

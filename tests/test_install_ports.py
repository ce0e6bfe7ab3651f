"""install.sh prints and checks the ports of the config Instafly will run with, not the
packaged defaults (--config, $INSTAFLY_CONFIG)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, free_port, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (REPO / ".venv" / "bin" / "instaflyd").exists(), reason="needs ./install.sh"
    ),
]


def install(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO / "install.sh"), "--no-browser", *args], capture_output=True, text=True,
        timeout=900, cwd=REPO, env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("how", ["--config", "INSTAFLY_CONFIG"])
def test_the_users_ports_are_printed_and_checked(tmp_path: Path, how: str) -> None:
    proxy_port, web_port = free_port(), free_port()
    config = write_config(
        tmp_path / "mine.yaml", {"proxy": {"listen_port": proxy_port}, "web": {"port": web_port}}
    )
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", web_port))
        busy.listen()
        if how == "--config":
            result = install("--config", str(config))
        else:
            result = install(env={"INSTAFLY_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    assert f"install.sh: warning: port {web_port} is in use" in result.stderr
    assert f"port {proxy_port} is in use" not in result.stderr
    assert "port 8081" not in result.stderr
    assert "Status page:     http://" in result.stdout and f":{web_port}/" in result.stdout
    assert f", port {proxy_port}\n" in result.stdout
    assert ":8081/" not in result.stdout

"""A first start on a read-only data folder (a real read-only bind mount): what the box must
write before it can work (the proxy's CA, the page's first password, its login key) waits and
is written once the folder is writable, with one log line, instead of an exit."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from helpers import wait_until
from support_faults import read_only, remount

from instaflyd.capture import proxy
from instaflyd.config import build_config
from instaflyd.daemon.run import announce_password_if_possible
from instaflyd.web.auth import load_secret_key
from instaflyd.web.password import password_file


def test_the_ca_waits_for_a_writable_folder_and_is_made_then(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    config.data_dir.mkdir()
    monkeypatch.setattr(proxy, "CA_RETRY_SECONDS", 0.05)
    with caplog.at_level(logging.INFO, logger="instafly"), read_only(config.data_dir):
        waiting = threading.Thread(target=proxy._ensure_ca_when_possible, args=(config,))
        waiting.start()
        wait_until(
            lambda: any("cannot be saved" in r.getMessage() for r in caplog.records),
            10,
            "the proxy to say it waits",
        )
        assert waiting.is_alive()  # waiting, not exited
        remount(config.data_dir, writable=True)
        waiting.join(30)
    assert not waiting.is_alive()
    assert (config.mitmproxy_dir / "mitmproxy-ca.pem").stat().st_mode & 0o077 == 0
    said = [r.getMessage() for r in caplog.records]
    assert sum("the proxy's certificate authority cannot be saved" in m for m in said) == 1
    assert "the proxy's certificate authority is saved: starting" in said


def test_the_first_password_and_login_key_wait_for_a_writable_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    config.data_dir.mkdir()
    with caplog.at_level(logging.INFO, logger="instafly"), read_only(config.data_dir):
        assert announce_password_if_possible(config) is False  # not saved: said, not raised
        key = load_secret_key(config.data_dir)  # logins work until a restart
        assert len(key) == 32
        remount(config.data_dir, writable=True)
        assert announce_password_if_possible(config) is True
    assert password_file(config.data_dir).is_file()
    said = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("the page's first password cannot be saved yet") for m in said)
    assert any(m.startswith("the page's login key cannot be saved") for m in said)
    assert any(m.startswith("the status page's password is ") for m in said)

"""Safe mode: with an invalid config the daemon serves only a page explaining the problems.

Crash-looping under systemd would hide the reason in the journal; instead the daemon listens on
the page's address (from the file if that part is readable, else the defaults), shows every
problem with its file, line and fix, and checks the file every few seconds. Once it is valid,
the daemon starts for real without a restart.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import Any

import yaml

from instaflyd.config import Config, ConfigError, find_config_file, load_config
from instaflyd.daemon.sdnotify import Notifier
from instaflyd.web import create_safe_mode_app
from instaflyd.web.server import WebServer

log = logging.getLogger("instafly.daemon")

RECHECK_SECONDS = 1.0


def wait_for_valid_config(
    problems: list[str],
    config_path: Path | None,
    data_dir: Path | None,
    notifier: Notifier,
    stop: threading.Event,
) -> Config | None:
    """Serve the safe-mode page until the config loads (returned) or a stop signal (None)."""
    source = _config_source(config_path)
    host, port = safe_mode_address(source)
    app = create_safe_mode_app(problems, source)
    server = WebServer(app, host, port)
    server.start()
    _report(problems, notifier, ready=True)
    seen = _signature(source)
    try:
        while not stop.wait(RECHECK_SECONDS):
            notifier.watchdog()
            current = _signature(source)
            if current == seen:
                continue
            seen = current
            try:
                config = load_config(config_path, data_dir)
            except ConfigError as exc:
                app.config["INSTAFLY_PROBLEMS"] = exc.problems
                _report(exc.problems, notifier, ready=False)
                continue
            log.info("the config is valid now: starting")
            return config
        return None
    finally:
        server.stop()


def safe_mode_address(source: Path | None) -> tuple[str, int]:
    """web.host and web.port from the file if they are usable there, else the defaults."""
    defaults = load_config(search=False).web
    host, port = defaults.host, defaults.port
    web: Any = {}
    if source is not None:
        with contextlib.suppress(OSError, yaml.YAMLError, AttributeError):
            web = (yaml.safe_load(source.read_text(encoding="utf-8")) or {}).get("web") or {}
    if isinstance(web, dict):
        if isinstance(web.get("host"), str):
            host = web["host"]
        if isinstance(web.get("port"), int) and 1 <= web["port"] <= 65535:
            port = web["port"]
    return host, port


def _config_source(config_path: Path | None) -> Path | None:
    """The file the problems are in (None when only the packaged defaults were read)."""
    try:
        return find_config_file(config_path)
    except ConfigError:
        return Path(config_path).expanduser() if config_path else None


def _signature(source: Path | None) -> tuple[int, int] | None:
    if source is None:
        return None
    try:
        stat = source.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _report(problems: list[str], notifier: Notifier, *, ready: bool) -> None:
    for problem in problems:
        log.error("config: %s", problem)
    status = f"safe mode, the config is invalid: {problems[0]}"
    if ready:
        notifier.ready(status)
    else:
        notifier.status(status)

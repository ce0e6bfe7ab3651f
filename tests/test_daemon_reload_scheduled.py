"""A reload leaves the trainer and the weights download running unless it changes what they read.

A real daemon, real `instaflyd train --scheduled` and `instaflyd weights fetch` children. Before,
every SIGHUP stopped both (and the daily backup) with the rest, whatever it changed: a new page
setting cost a run of training, hours of CPU on a small box, or a download started over. Now a
reload that changes only the page's settings keeps them (the same pid, adopted by the new
daemon), and one that changes their own section stops them and starts them again with it.

The trainer is held with SIGSTOP as soon as it starts, so that it neither loads TensorFlow nor
ends before the reloads (a real process all the same; `faults.hang_seconds` is long enough
for its silence). The weights come from a local server that sends them a kilobyte at a time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import wait_until
from support_daemon import RunningDaemon, daemon_config, running_daemon, seed_store

from instaflyd.weights.file import WEIGHTS_BYTES

pytestmark = pytest.mark.slow


def process_state(pid: int) -> str | None:
    """The kernel's one-letter state of `pid` (R, S, T, Z...), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def reload_with(daemon: RunningDaemon, values: dict[str, Any]) -> None:
    daemon.config.write_text(yaml.safe_dump(values))
    daemon.process.send_signal(signal.SIGHUP)


def component_pid(daemon: RunningDaemon, name: str) -> int | None:
    code, _ = daemon.get("/healthz")
    if code not in (200, 503):
        return None
    with contextlib.suppress(AssertionError, OSError, ValueError):
        return daemon.status()["components"][name]["pid"]
    return None


def reloaded(daemon: RunningDaemon, count: int) -> bool:
    """The `count`-th reload has finished: the new daemon is ready again."""
    parts = daemon.output().split("reloading the config: starting again")
    return len(parts) == count + 1 and " ready: " in parts[-1]


def proxy_running(daemon: RunningDaemon) -> bool:
    """Up: a reload keeps it (one still starting is started again by the new daemon)."""
    with contextlib.suppress(AssertionError, OSError, ValueError):
        return daemon.status()["components"]["proxy"]["state"] == "running"
    return False


def test_a_page_only_reload_keeps_the_trainer_and_a_train_reload_restarts_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    seed_store(data, posts=12, owners=4)
    config, web_port, proxy_port = daemon_config(
        tmp_path,
        data,
        train={"min_labelled_posts": 10, "min_owners": 2, "check_interval_seconds": 1},
        faults={"hang_seconds": 600},
    )
    values = yaml.safe_load(config.read_text())
    with running_daemon(config, data, web_port, proxy_port) as daemon:
        trainer = wait_until(lambda: component_pid(daemon, "trainer"), 60, "the trainer")
        os.kill(trainer, signal.SIGSTOP)  # held mid-run: it neither ends nor loads TensorFlow
        wait_until(lambda: proxy_running(daemon), 60, "the proxy")
        worker = component_pid(daemon, "worker")

        # Only the page's settings change: the trainer goes on, the same process.
        page_only = {**values, "web": {**values["web"], "uploads_max_total_mb": 512}}
        reload_with(daemon, page_only)
        wait_until(lambda: reloaded(daemon, 1), 60, "the first reload", output=daemon.output)
        assert component_pid(daemon, "trainer") == trainer
        assert process_state(trainer) == "T"  # alive, still held: never stopped and restarted
        assert component_pid(daemon, "worker") == worker
        assert daemon.status()["components"]["trainer"]["state"] == "running"
        assert f"trainer kept running (pid {trainer})" in daemon.output()
        assert "reload: keeping proxy, trainer, worker (settings unchanged)" in daemon.output()

        # A training setting changes: the trainer is stopped and, still due, started anew.
        os.kill(trainer, signal.SIGCONT)  # so that it answers the stop at once
        more_epochs = {**page_only, "train": {**page_only["train"], "epochs": 3}}
        reload_with(daemon, more_epochs)
        wait_until(lambda: reloaded(daemon, 2), 60, "the second reload", output=daemon.output)
        again = wait_until(
            lambda: (pid := component_pid(daemon, "trainer")) not in (None, trainer) and pid,
            30,
            "a new trainer",
        )
        os.kill(again, signal.SIGSTOP)
        assert process_state(trainer) is None  # the old one was stopped (and reaped)
        assert "reload: keeping proxy, worker (settings unchanged); restarting trainer" in (
            daemon.output()
        )
        assert component_pid(daemon, "worker") == worker  # reads no train setting
        os.kill(again, signal.SIGCONT)
    assert daemon.process.returncode == 0


@contextlib.contextmanager
def trickling_weights_server() -> Iterator[tuple[str, list[str]]]:
    """A server that announces the real weights file's size and sends a kilobyte every 0.1 s
    (a slow line): a fetch from it runs until it is stopped. Yields its URL and the paths
    asked for."""
    asked: list[str] = []
    stop = threading.Event()

    class Trickle(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(WEIGHTS_BYTES))
            self.end_headers()
            with contextlib.suppress(OSError):
                while not stop.wait(0.1):
                    self.wfile.write(b"\0" * 1024)
                    self.wfile.flush()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", asked
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


def test_a_page_only_reload_keeps_the_weights_download_and_a_new_url_restarts_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    with trickling_weights_server() as (url, asked):
        config, web_port, proxy_port = daemon_config(
            tmp_path, data, model={"weights": "imagenet", "weights_url": f"{url}/first.h5"}
        )
        values = yaml.safe_load(config.read_text())
        with running_daemon(config, data, web_port, proxy_port) as daemon:
            fetching = "fetching the ImageNet VGG16 weights in the background (pid "
            fetch = int(
                wait_until(
                    lambda: fetching in daemon.output() and asked,
                    60,
                    "the download",
                    output=daemon.output,
                )
                and daemon.output().split(fetching)[1].split(")")[0]
            )
            assert process_state(fetch) not in (None, "Z")
            wait_until(lambda: proxy_running(daemon), 60, "the proxy")

            page_only = {**values, "web": {**values["web"], "uploads_max_total_mb": 512}}
            reload_with(daemon, page_only)
            wait_until(lambda: reloaded(daemon, 1), 60, "the first reload", output=daemon.output)
            assert f"the weights fetch kept running (pid {fetch})" in daemon.output()
            time.sleep(0.5)
            assert process_state(fetch) not in (None, "Z")  # still downloading
            assert asked == ["/first.h5"]  # not started over

            moved = {
                **page_only,
                "model": {**page_only["model"], "weights_url": f"{url}/second.h5"},
            }
            reload_with(daemon, moved)
            wait_until(lambda: reloaded(daemon, 2), 60, "the second reload", output=daemon.output)
            wait_until(lambda: "/second.h5" in asked, 30, "the download from the new address")
            assert process_state(fetch) is None  # the old fetch was stopped
            # The worker reads the model section too (section by section, as the rule goes).
            assert (
                "reload: keeping proxy (settings unchanged); restarting worker, weights"
                in daemon.output()
            )
        assert daemon.process.returncode == 0

"""One shutdown budget from systemd's TimeoutStopSec down: every deadline inside the one above
it, the capture writer draining its backlog inside the proxy's share, and a page that dies
taking the daemon down loudly instead of leaving it running without its page."""

from __future__ import annotations

import configparser
import io
import logging
import socket
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import REPO, free_port, wait_until
from support_daemon import http_get
from test_capture_addon import counters, profile_flow, run_flows

from instaflyd import shutdown
from instaflyd.capture.addon import CaptureAddon
from instaflyd.capture.writer import CaptureWriter
from instaflyd.config import Config, build_config
from instaflyd.daemon.children import ChildProcess
from instaflyd.daemon.run import EXIT_PAGE_DIED, Daemon
from instaflyd.daemon.sdnotify import Notifier
from instaflyd.daemon.supervisor import ComponentSpec, Supervisor


def test_the_budget_is_systemds_and_every_share_fits_inside_the_one_above() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(REPO / "systemd" / "instaflyd.service")
    assert float(unit["Service"]["TimeoutStopSec"]) == shutdown.STOP_BUDGET_SECONDS
    assert unit["Service"]["KillMode"] == "mixed"  # SIGTERM to the daemon, SIGKILL to all after

    daemon_gives = shutdown.STOP_BUDGET_SECONDS - shutdown.DAEMON_SHARE
    assert shutdown.child_env(shutdown.DAEMON_SHARE) == {"INSTAFLY_STOP_SECONDS": "17"}
    writer_gets = daemon_gives - shutdown.PROXY_SHARE
    enhancer_gets = daemon_gives - shutdown.WORKER_SHARE
    assert 0 < writer_gets < daemon_gives < shutdown.STOP_BUDGET_SECONDS
    assert 0 < enhancer_gets < daemon_gives


def test_a_child_is_told_its_share_of_the_budget() -> None:
    out = io.StringIO()
    child = ChildProcess(
        "proxy",
        [sys.executable, "-c", "from instaflyd import shutdown; print(shutdown.for_children(2))"],
        relay_to=out,
    )
    assert child.wait(30) == 0
    assert child.last_line() == "15.0"  # 20 - 3 for the daemon, then 2 for the proxy itself


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return build_config({"data_dir": str(tmp_path / "data")})


# How long a test lets the writer take: it runs at idle priority, so on a loaded machine it
# gets no CPU at all for a while. `stop()` returns as soon as the writer has ended; that it
# keeps to a short budget is the next test's business.
WRITER_PATIENCE_SECONDS = 300.0


@pytest.mark.slow
def test_stopping_with_a_backlog_writes_every_item_handed_over(config: Config) -> None:
    """The proxy stops while the writer is behind: what capture accepted is all stored."""
    writer = CaptureWriter(config, backlog_bytes=50_000_000)  # everything is accepted
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, *[profile_flow() for _ in range(60)])  # ~60 x 60 kB: beyond the pipe
    assert len(writer._backlog) > 1  # a real backlog waits in the proxy's memory
    writer.start()
    started = time.monotonic()
    writer.stop(WRITER_PATIENCE_SECONDS)  # waits for the writer's end, not for a fixed time
    assert time.monotonic() - started < WRITER_PATIENCE_SECONDS
    counted = counters(config)
    assert (counted["flows"], counted["instagram_json"]) == (60, 60)
    assert counted.get("flows_dropped", 0) == 0
    assert writer._process.exitcode == 0


def test_a_backlog_that_cannot_be_written_in_time_is_reported_lost_at_error(
    config: Config, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = CaptureWriter(config, backlog_bytes=50_000_000)
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, *[profile_flow() for _ in range(60)])
    waiting = len(writer._backlog)
    writer.start()
    instafly = logging.getLogger("instafly")  # as in the proxy: not through mitmproxy's handler
    monkeypatch.setattr(instafly, "propagate", False)
    monkeypatch.setattr(instafly, "handlers", [caplog.handler])
    started = time.monotonic()
    writer.stop(timeout=0.0)
    assert time.monotonic() - started < 10  # its own 0 s, then 5 s for the writer to end
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    lost = [e for e in errors if "could not be handed to the writer within 0 s" in e]
    assert lost and int(lost[0].split()[1]) >= waiting > 1, errors
    assert any("the writer did not finish within 0 s" in e for e in errors), errors


@pytest.mark.slow
def test_a_page_that_dies_stops_the_daemon_with_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    config = build_config(
        {"data_dir": str(tmp_path / "data"), "web": {"host": "127.0.0.1", "port": port}}
    )
    stop = threading.Event()
    result: list[int] = []

    def run_the_daemon() -> None:  # in one thread, as its store connection wants
        daemon = Daemon(config, Notifier({}))
        # The page, with a stand-in for the proxy (a sleeping child): no mitmproxy, no worker.
        sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
        daemon.supervisor = Supervisor([ComponentSpec("proxy", sleeper)], daemon.events)
        result.append(daemon.run(stop))

    runner = threading.Thread(target=run_the_daemon, daemon=True)
    with caplog.at_level(logging.ERROR, logger="instafly"):
        runner.start()
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 20, "the page")
        # The server's loop fails underneath it: its listening socket is closed behind its back.
        listening = [s for s in daemon_sockets(port)]
        assert listening
        for sock in listening:
            sock.close()
        runner.join(20)
    assert result == [EXIT_PAGE_DIED]
    assert not stop.is_set()  # nobody asked it to stop
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(
        e.startswith(f"the status page's server on 127.0.0.1:{port} stopped unexpectedly")
        for e in errors
    )
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def daemon_sockets(port: int) -> list[socket.socket]:
    """The page's listening socket objects in this process (waitress's, found by port)."""
    import gc

    return [
        obj
        for obj in gc.get_objects()
        if isinstance(obj, socket.socket)
        and obj.fileno() >= 0
        and obj.family == socket.AF_INET
        and obj.getsockname()[1] == port
        and obj.type == socket.SOCK_STREAM
    ]

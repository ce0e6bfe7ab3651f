"""Another program holds the database's write lock for 30 s: the daemon does not wait for it.

A second process holds a write transaction on the real SQLite file (BEGIN IMMEDIATE, 30 s, far
past nothing: the store's busy timeout is 30 s too). Meanwhile the worker is killed: the
supervisor restarts it at once (its event waits in the event writer's queue, not in the
supervisor's loop or under its lock), and /healthz and /api/status keep answering within 1 s.
Once the lock is gone, the event is in the log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_until
from support_daemon import daemon_config, http_get, running_daemon

pytestmark = pytest.mark.slow

HOLD_SECONDS = 30

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=60)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO counters (name, value) VALUES ('held_by_another_program', 1)"
             " ON CONFLICT(name) DO UPDATE SET value = value + 1")
print("holding", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
print("released", flush=True)
"""


def test_a_second_writer_holding_the_store_delays_neither_the_page_nor_a_restart(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    config, web_port, proxy_port = daemon_config(tmp_path, data)
    with running_daemon(config, data, web_port, proxy_port) as daemon:
        before = wait_until(
            lambda: (
                daemon.status()["instafly"]["state"] == "running"
                and (w := daemon.status()["components"]["worker"])["state"] == "running"
                and w
            ),
            60,
            "the daemon",
        )
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(data / "instafly.db"), str(HOLD_SECONDS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "holding\n"
            held = time.monotonic()
            latencies: dict[str, list[float]] = {"/healthz": [], "/api/status": []}
            stop = threading.Event()

            def poll() -> None:
                while not stop.is_set():
                    for path in latencies:
                        started = time.monotonic()
                        code, _ = (
                            http_get(daemon.url + path, timeout=5)
                            if path == "/healthz"
                            else daemon.get(path, timeout=5)
                        )
                        latencies[path].append(time.monotonic() - started)
                        assert code == 200, (path, code)
                    time.sleep(0.2)

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            time.sleep(2)  # the daemon's own loop has ticked under the lock
            os.kill(before["pid"], signal.SIGKILL)
            killed = time.monotonic()
            after = wait_until(
                lambda: (
                    (w := daemon.status()["components"]["worker"])["pid"]
                    not in (None, before["pid"])
                    and w
                ),
                20,
                "the worker's restart",
            )
            restarted = time.monotonic()
            assert restarted - held < HOLD_SECONDS - 5, "the restart waited for the lock"
            holder.wait(HOLD_SECONDS + 10)
            released = time.monotonic()
            stop.set()
            poller.join(10)
        finally:
            holder.kill()
            holder.wait(5)
        assert holder.stdout.readline() == "released\n"
        print(
            f"lock held {released - held:.1f} s; worker restarted {restarted - killed:.1f} s"
            f" after its SIGKILL; slowest /healthz {max(latencies['/healthz']) * 1000:.0f} ms,"
            f" /api/status {max(latencies['/api/status']) * 1000:.0f} ms"
            f" ({len(latencies['/healthz'])} requests each)"
        )
        assert released - held >= HOLD_SECONDS - 1  # the lock really was held all along
        assert restarted - killed < 5
        assert after["restarts"] == before["restarts"] + 1
        assert len(latencies["/healthz"]) > 20
        assert max(latencies["/healthz"]) < 1.0
        assert max(latencies["/api/status"]) < 1.0
        assert json.loads(http_get(daemon.url + "/healthz")[1])["status"] == "ok"
        # The event waited for the lock, not the restart: it is in the log now.
        [event] = wait_until(
            lambda: [
                e
                for e in daemon.status()["capture"]["recent_errors"]
                if (e["component"], e["kind"]) == ("worker", "exited")
            ],
            40,
            "the worker's exit in the event log",
        )
        assert event["message"] == "worker was killed by signal 9; restarting in 1 s"

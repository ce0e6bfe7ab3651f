"""A child that stops answering is noticed within seconds, said on the page, and restarted.

The real daemon (`instaflyd run`) with `faults.hang_seconds: 3`; the proxy and then the worker
are stopped for real with SIGSTOP. Within seconds /healthz, /metrics and the page say which one
hangs, the supervisor kills and restarts it, the event log says it hung, and the phones'
requests (through the real proxy to a stand-in Instagram) and the drop folder work again.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from helpers import jpeg_bytes, wait_until
from support_capture import InstagramStandIn, recorded_requests
from support_daemon import RunningDaemon, daemon_config, http_get, running_daemon

pytestmark = pytest.mark.slow

HANG_SECONDS = 3


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[RunningDaemon, InstagramStandIn]]:
    with InstagramStandIn(tmp_path / "origin") as origin:
        config, web_port, proxy_port = daemon_config(
            tmp_path,
            tmp_path / "data",
            proxy={"mitmproxy_options": origin.mitmproxy_options()},
            faults={"hang_seconds": HANG_SECONDS},
        )
        with running_daemon(config, tmp_path / "data", web_port, proxy_port) as running:
            wait_until(
                lambda: all(
                    running.status()["components"][name]["state"] == "running"
                    for name in ("proxy", "worker")
                ),
                60,
                "the proxy and the worker",
            )
            yield running, origin


def through_the_proxy(daemon: RunningDaemon, timeout: float = 10) -> int:
    """A phone's request: an Instagram page through the proxy (to the stand-in)."""
    request = recorded_requests()[0]
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": f"http://127.0.0.1:{daemon.proxy_port}"}
    ca = daemon.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem"
    return session.get(request.url, verify=str(ca), timeout=timeout).status_code


class Watcher:
    """Polls /healthz, /metrics and the page; keeps when each first said `problem_id`."""

    def __init__(self, daemon: RunningDaemon, problem_id: str) -> None:
        self.daemon = daemon
        self.problem_id = problem_id
        self.seen: dict[str, float] = {}
        self.healthz: dict[str, Any] | None = None
        self.card = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            code, body = http_get(self.daemon.url + "/healthz", timeout=2)
            health = json.loads(body)
            if code == 503 and any(p["id"] == self.problem_id for p in health["problems"]):
                self.seen.setdefault("healthz", now)
                self.healthz = self.healthz or health
            _, metrics = self.daemon.get("/metrics", timeout=2)
            if f'instafly_problem{{id="{self.problem_id}",severity="error"}} 1.0' in (
                metrics.decode()
            ):
                self.seen.setdefault("metrics", now)
            _, page = self.daemon.get("/", timeout=2)
            html = page.decode()
            if f'data-problem="{self.problem_id}"' in html:
                self.seen.setdefault("page", now)
                self.card = self.card or html.split(f'data-problem="{self.problem_id}"')[1]
            time.sleep(0.1)


def test_a_stopped_proxy_is_said_within_seconds_restarted_and_serves_phones_again(
    daemon: tuple[RunningDaemon, InstagramStandIn],
) -> None:
    running, _ = daemon
    assert through_the_proxy(running) == 200
    before = running.status()["components"]["proxy"]
    time.sleep(1)  # it has beaten since it started
    with Watcher(running, "child.hung.proxy") as watcher:
        stopped = time.monotonic()
        os.kill(before["pid"], signal.SIGSTOP)
        wait_until(
            lambda: running.status()["components"]["proxy"]["pid"] not in (before["pid"], None),
            40,
            "the hung proxy's restart",
        )
        restarted = time.monotonic()
        after = wait_until(
            lambda: (c := running.status()["components"]["proxy"])["state"] == "running" and c,
            60,
            "the new proxy to listen",
        )
        code = wait_until(lambda: through_the_proxy(running) == 200, 30, "a phone's request")
        served = time.monotonic()
        wait_until(lambda: len(watcher.seen) == 3, 10, "the hang on /healthz, /metrics and /")
    said = {where: round(when - stopped, 1) for where, when in watcher.seen.items()}
    print(
        f"proxy SIGSTOP (hang_seconds {HANG_SECONDS}): said after {said},"
        f" a new proxy after {restarted - stopped:.1f} s, phones served after"
        f" {served - stopped:.1f} s"
    )
    assert code is True
    for where, after_seconds in said.items():
        assert after_seconds < HANG_SECONDS + 3, where
    assert restarted - stopped < HANG_SECONDS + 5  # killed, then 1 s of back-off
    assert after["restarts"] == before["restarts"] + 1
    assert after["last_error"].startswith("stopped answering for ")
    assert after["last_error"].endswith(" s (hung)")
    with pytest.raises(ProcessLookupError):  # the stopped one was killed, not left behind
        os.kill(before["pid"], 0)
    assert watcher.healthz is not None and watcher.healthz["status"] == "error"
    [hung] = [p for p in watcher.healthz["problems"] if p["id"] == "child.hung.proxy"]
    assert hung["sentence"].startswith("The proxy stopped answering for ")
    assert "phones could not browse through it" in hung["sentence"]
    assert "What to do:" in watcher.card
    [event] = wait_until(
        lambda: [
            e
            for e in running.status()["capture"]["recent_errors"]
            if (e["component"], e["kind"]) == ("proxy", "hung")
        ],
        10,
        "the hang in the event log",
    )
    assert event["level"] == "error"
    assert event["message"].startswith("proxy stopped answering for ")
    assert event["message"].endswith("(hung), so it was killed; restarting in 1 s")
    # The new proxy answers: the problem is gone, /healthz is ok again.
    wait_until(
        lambda: json.loads(http_get(running.url + "/healthz")[1])["status"] == "ok",
        15,
        "healthz ok again",
    )


def test_a_stopped_worker_is_restarted_and_drops_are_queued_again(
    daemon: tuple[RunningDaemon, InstagramStandIn],
) -> None:
    running, _ = daemon
    before = running.status()["components"]["worker"]
    time.sleep(1)
    drop = running.data_dir / "drop"
    with Watcher(running, "child.hung.worker") as watcher:
        stopped = time.monotonic()
        os.kill(before["pid"], signal.SIGSTOP)
        (drop / "during.jpg").write_bytes(jpeg_bytes(64, 64, seed=1))  # dropped while it hangs
        wait_until(
            lambda: running.status()["components"]["worker"]["pid"] not in (before["pid"], None),
            40,
            "the hung worker's restart",
        )
        restarted = time.monotonic()
        (drop / "after.jpg").write_bytes(jpeg_bytes(64, 64, seed=2))
        jobs = wait_until(
            lambda: (
                sum(running.status()["drop_folder"]["jobs"].values()) == 2
                and running.status()["drop_folder"]
            ),
            30,
            "both photos queued",
        )
        wait_until(lambda: len(watcher.seen) == 3, 10, "the hang on /healthz, /metrics and /")
    said = {where: round(when - stopped, 1) for where, when in watcher.seen.items()}
    print(f"worker SIGSTOP (hang_seconds {HANG_SECONDS}): said after {said},"
          f" a new worker after {restarted - stopped:.1f} s")  # fmt: skip
    for where, after_seconds in said.items():
        assert after_seconds < HANG_SECONDS + 3, where
    assert restarted - stopped < HANG_SECONDS + 5
    assert {job["name"] for job in jobs["recent"]} == {"during.jpg", "after.jpg"}
    with pytest.raises(ProcessLookupError):
        os.kill(before["pid"], 0)
    [event] = wait_until(
        lambda: [
            e
            for e in running.status()["capture"]["recent_errors"]
            if (e["component"], e["kind"]) == ("worker", "hung")
        ],
        10,
        "the hang in the event log",
    )
    assert event["message"].startswith("worker stopped answering for ")

"""The capture writer while the store cannot be written: a real full disk (a small tmpfs).

What arrives while the disk is full waits in the writer's retry queue and is stored once
space returns; beyond the queue's bytes it is lost and counted with the reason; one log line
when the fault begins and one when it ends, never one per response.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import free_port, wait_until, write_config
from support_capture import (
    InstagramStandIn,
    RecordedRequest,
    recorded_requests,
    running_proxy,
)
from support_faults import fill, logged_in, sample_responses, small_tmpfs

from instaflyd import repairs
from instaflyd.capture.writer import write_until_stopped
from instaflyd.capture.writer_state import WriterState, read_state
from instaflyd.config import Config, build_config, load_config
from instaflyd.repairs import RepairsRegistry

DISK_MB = 8


def rows(config: Config, sql: str) -> list[tuple]:
    with sqlite3.connect(config.db_path) as conn:
        return [tuple(row) for row in conn.execute(sql).fetchall()]


def posts(config: Config) -> int:
    return rows(config, "SELECT COUNT(*) FROM posts")[0][0] if config.db_path.exists() else 0


class LogLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(
            record.getMessage() + ("\n" + str(record.exc_info) if record.exc_info else "")
        )


class RunningWriter:
    """The writer's loop on a thread of this test, fed through a queue."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.inbox: queue.Queue[object] = queue.Queue()
        self.thread = threading.Thread(target=write_until_stopped, args=(config, self.inbox))

    def stop(self) -> None:
        if self.thread.is_alive():
            self.inbox.put(None)
            self.thread.join(30)
        assert not self.thread.is_alive()

    def state(self) -> WriterState | None:
        return read_state(self.config.runtime_dir)


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    handler = LogLines()
    logger = logging.getLogger("instafly")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)  # as the daemon logs by default (log.level: info)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def registry() -> Iterator[RepairsRegistry]:
    """The repairs list, as in the daemon (here the writer runs in this process)."""
    registry = RepairsRegistry()
    repairs.install(registry, source="proxy")
    try:
        yield registry
    finally:
        repairs.install(None)


def store_everything(config: Config) -> dict[str, list[tuple]]:
    """What the sample session leaves in a store that never fails (the reference)."""
    writer = RunningWriter(config)
    writer.thread.start()
    for response in sample_responses(config.proxy.max_body_bytes):
        writer.inbox.put(response)
    writer.stop()
    return contents(config)


def contents(config: Config) -> dict[str, list[tuple]]:
    return {
        "posts": rows(config, "SELECT id, like_count, image_sha256 FROM posts ORDER BY id"),
        "accounts": rows(config, "SELECT id, follower_count FROM accounts ORDER BY id"),
        "images": rows(config, "SELECT sha256, width, height FROM images ORDER BY sha256"),
    }


def test_captures_made_while_the_disk_is_full_are_stored_once_space_returns(
    tmp_path: Path, log_lines: LogLines, registry: RepairsRegistry
) -> None:
    reference = store_everything(build_config({"data_dir": str(tmp_path / "reference")}))
    assert len(reference["posts"]) == 32 and len(reference["images"]) == 4

    responses = sample_responses(25_000_000)
    with small_tmpfs(tmp_path / "disk", DISK_MB) as disk:
        config = build_config({"data_dir": str(disk / "data")})
        writer = RunningWriter(config)
        writer.thread.start()
        try:
            writer.inbox.put(responses[0])  # stored while there is room
            wait_until(lambda: posts(config) == 20, 20, "the profile's posts")
            filler = fill(disk)
            for response in responses[1:]:
                writer.inbox.put(response)
            state = wait_until(
                lambda: (s := writer.state()) and s.held == len(responses) - 1 and s,
                20,
                "every later response to be held",
            )
            assert state.fault == "disk_full"
            assert state.held_bytes > sum(len(r.body) for r in responses[1:])
            # The note is written a moment before the card is renewed from the same state.
            [problem] = wait_until(
                lambda: (p := registry.problems()) and p[0].sentence.startswith("10 ") and p,
                20,
                "the card to count them",
            )  # the page's repairs list
            assert (problem.id, problem.severity) == ("capture.waiting", "error")
            assert problem.sentence == (
                "10 captured responses are waiting to be saved: the data folder's disk is full."
            )
            assert problem.action.startswith("Free some space")
            assert state.lost == {}
            assert posts(config) == 20

            filler.unlink()  # the household frees space
            wait_until(
                lambda: (s := writer.state()) and s.held == 0 and s.fault is None,
                60,
                "the held responses to be stored",
            )
        finally:
            writer.stop()
        assert registry.problems() == []  # resolved once everything was stored
        assert contents(config) == reference
        state = writer.state()
        assert state is not None and state.stored_after_waiting == len(responses) - 1
        [(level, message)] = rows(
            config, "SELECT level, message FROM events WHERE kind = 'store_recovered'"
        )
        assert level == "info"
        assert message.startswith("The store could not be written for ")
        assert message.endswith(
            f"(the data folder's disk is full); {len(responses) - 1} captured responses waited"
            " and were stored."
        )
        counters = dict(rows(config, "SELECT name, value FROM counters"))
        assert counters["posts_new"] == 32
        assert not any(name.startswith("captures_lost") for name in counters)

    # One line when the fault began, one when it ended; no traceback, no line per response.
    faults = [line for line in log_lines.lines if "store" in line or "counters" in line]
    assert len(faults) == 2, faults
    assert faults[0].startswith(
        "capture: cannot write to the store: the data folder's disk is full"
    )
    assert faults[1].startswith("capture: the store accepts writes again.")
    assert not any("Traceback" in line or "(<class" in line for line in log_lines.lines)


@pytest.mark.slow
def test_beyond_the_retry_queue_responses_are_lost_and_counted_with_the_reason(
    tmp_path: Path, log_lines: LogLines
) -> None:
    responses = [r for r in sample_responses(25_000_000) if r.kind == "document"]
    bodies = [len(r.body) for r in responses[1:]]
    with small_tmpfs(tmp_path / "disk", DISK_MB) as disk:
        # Room for the first waiting response only.
        config = build_config(
            {"data_dir": str(disk / "data"), "proxy": {"store_retry_max_bytes": bodies[0] + 600}}
        )
        writer = RunningWriter(config)
        writer.thread.start()
        try:
            writer.inbox.put(responses[0])
            wait_until(lambda: posts(config) == 20, 20, "the profile's posts")
            filler = fill(disk)
            for response in responses[1:]:
                writer.inbox.put(response)
            lost = len(responses) - 2
            state = wait_until(
                lambda: (s := writer.state()) and s.held + s.lost_total == lost + 1 and s,
                20,
                "every later response to be held or lost",
            )
            assert (state.fault, state.held, state.lost) == ("disk_full", 1, {"disk_full": lost})
            filler.unlink()
            wait_until(lambda: (s := writer.state()) and s.held == 0 and s.fault is None, 60,
                       "the held response to be stored")  # fmt: skip
        finally:
            writer.stop()
        counters = dict(rows(config, "SELECT name, value FROM counters"))
        assert counters["captures_lost_disk_full"] == lost
        [(level, message)] = rows(
            config, "SELECT level, message FROM events WHERE kind = 'store_recovered'"
        )
        assert level == "warning"
        assert message.endswith(
            f"1 captured responses waited and were stored, {lost} were lost because the retry"
            " queue was full."
        )
    overflow = [line for line in log_lines.lines if "retry queue is full" in line]
    assert len(overflow) == 1  # once per outage, not per response


@pytest.mark.slow
def test_through_the_real_proxy_a_full_disk_loses_nothing_and_the_page_says_so(
    tmp_path: Path,
) -> None:
    port = free_port()
    with (
        small_tmpfs(tmp_path / "disk", 16) as disk,
        InstagramStandIn(tmp_path / "origin") as origin,
    ):
        data = disk / "data"
        config_path = write_config(
            tmp_path / "instafly.yaml",
            {
                "data_dir": str(data),
                "proxy": {
                    "listen_host": "127.0.0.1",
                    "listen_port": port,
                    "mitmproxy_options": origin.mitmproxy_options(),
                },
            },
        )
        config = load_config(config_path)
        requests_ = recorded_requests()
        [profile] = [r for r in requests_ if "web_profile_info" in r.url]
        with running_proxy(config_path, port, tmp_path / "proxy.log"):
            session = requests.Session()
            session.trust_env = False
            session.proxies = {"https": f"http://127.0.0.1:{port}"}
            ca = str(data / "mitmproxy" / "mitmproxy-ca-cert.pem")

            def browse(request: RecordedRequest) -> int:
                response = session.request(
                    request.method, request.url, data=request.body, verify=ca, timeout=30
                )
                return response.status_code

            assert browse(profile) == 200
            wait_until(lambda: posts(config) == 20, 20, "the profile's posts")
            page = logged_in(config)  # its session is saved while there is room

            filler = fill(disk)
            others = [r for r in requests_ if r is not profile]
            # The phones notice nothing: every answer comes as before.
            assert [browse(r) for r in others] == [200] * 10 + [404]
            state = wait_until(
                lambda: (s := read_state(config.runtime_dir)) and s.held == 10 and s,
                20,
                "the 10 captured responses to wait",
            )
            assert state.fault == "disk_full" and state.lost == {}
            assert posts(config) == 20
            status = page.get("/api/status").get_json()
            assert status["capture"]["store_retry"]["held"] == 10
            problems = {p["id"]: p for p in status["repairs"]["problems"]}
            assert problems["capture.waiting"]["sentence"] == (
                "10 captured responses are waiting to be saved: the data folder's disk is full."
            )
            html = page.get("/").get_data(as_text=True)
            assert (
                "10 captured responses are waiting to be saved: the data folder&#39;s disk is full"
                in html
            )
            assert "<strong>What to do:</strong> Free some space" in html

            filler.unlink()
            wait_until(lambda: posts(config) == 32, 20, "every post to be stored")
            wait_until(
                lambda: (s := read_state(config.runtime_dir)) and s.fault is None,
                20,
                "the writer to say the store takes writes again",
            )
            html = page.get("/").get_data(as_text=True)
            assert "waiting to be saved" not in html
        assert rows(config, "SELECT COUNT(*) FROM posts WHERE image_sha256 IS NOT NULL") == [(4,)]
        assert rows(config, "SELECT COUNT(*) FROM labelled_posts") == [(3,)]
        log = (tmp_path / "proxy.log").read_text()
        assert log.count("cannot write to the store") == 1, log
        assert log.count("the store accepts writes again") == 1, log
        assert "Traceback" not in log and "cannot write counters" not in log, log

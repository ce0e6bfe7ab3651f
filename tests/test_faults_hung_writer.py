"""A capture writer that hangs (SIGSTOP, for real) is said, killed, replaced, and what it had not
finished is stored by the next one; what it held in memory is counted as lost, with the reason.

The proxy keeps every frame it wrote into the writer's pipe until the writer says (in integers
shared with the proxy) that it has finished with it; when the writer dies, the frames it had
not finished go to the new writer first.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import requests
from helpers import wait_until
from support_capture import recorded_requests
from support_daemon import RunningDaemon
from support_faults import read_only, remount
from test_capture_addon import (
    SAMPLES,
    USERS_INFO_ACCOUNT,
    USERS_INFO_ID,
    USERS_INFO_URL,
    WRITER_PATIENCE_SECONDS,
    counters,
    make_flow,
    profile_flow,
    run_flows,
    store,
)
from test_faults_hung_children import HANG_SECONDS, Watcher, daemon  # noqa: F401

from instaflyd import shutdown
from instaflyd.capture.addon import CaptureAddon
from instaflyd.capture.writer import DONE, HELD, CaptureWriter
from instaflyd.config import Config, build_config
from instaflyd.processes import process_tree
from instaflyd.store import Database

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _the_writer_may_take_its_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(shutdown.ENV, f"{WRITER_PATIENCE_SECONDS + shutdown.PROXY_SHARE:g}")
    monkeypatch.setattr(logging.getLogger("instafly"), "propagate", False)


def users_info_flow():  # type: ignore[no-untyped-def]
    body = (SAMPLES / "pgrimaud/users_info_v1_2021-09.json").read_bytes()
    return make_flow(USERS_INFO_URL, body, "application/json")


def posts(config: Config) -> int:
    return store(config).execute("SELECT COUNT(*) FROM posts").fetchone()[0]


def test_what_a_hung_writer_had_in_its_pipe_is_stored_by_the_next_one(tmp_path: Path) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    writer = CaptureWriter(config)
    writer.start()
    addon = CaptureAddon(writer, config.proxy.max_body_bytes)
    run_flows(addon, profile_flow())
    wait_until(
        lambda: counters(config).get("posts_new") == 20, WRITER_PATIENCE_SECONDS, "the posts"
    )
    hung = writer._process
    os.kill(hung.pid, signal.SIGSTOP)  # it hangs: reads nothing more
    run_flows(addon, users_info_flow())  # into its pipe, where nobody reads it
    assert len(writer._unfinished) == 1  # kept until a writer has finished with it
    os.kill(hung.pid, signal.SIGKILL)  # as the daemon does to a writer that stopped beating
    wait_until(lambda: not hung.is_alive(), WRITER_PATIENCE_SECONDS, "the kill")
    writer.check()  # the proxy's check, every second: a new writer, given what was unfinished
    assert writer.restarts == 1 and writer._process.pid != hung.pid
    writer.stop()
    assert writer._process.exitcode == 0
    account = store(config).execute(
        "SELECT username, follower_count FROM accounts WHERE id = ?", (USERS_INFO_ID,)
    )
    assert tuple(account.fetchone()) == USERS_INFO_ACCOUNT
    counted = counters(config)
    assert counted["flows"] == 2 and counted["posts_new"] == 20
    assert "captures_lost_writer" not in counted  # it held nothing in memory
    assert events(config) == [
        (
            "info",
            "The capture writer was killed (it had stopped answering, or ran out of memory) and"
            " was started again; the 1 captured items it had not finished were given to the new"
            " one.",
        )
    ]


def events(config: Config) -> list[tuple[str, str]]:
    rows = store(config).execute("SELECT level, message FROM events WHERE kind = 'writer_replaced'")
    return [tuple(row) for row in rows]


def test_what_a_dead_writer_held_waiting_for_the_store_is_counted_as_lost(
    tmp_path: Path,
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    Database(config.db_path).close()
    with read_only(config.data_dir):  # the store refuses writes: the writer holds them
        writer = CaptureWriter(config)
        writer.start()
        addon = CaptureAddon(writer, config.proxy.max_body_bytes)
        run_flows(addon, profile_flow(), users_info_flow())
        wait_until(
            lambda: writer._progress[HELD] == 2 and writer._progress[DONE] >= 2,
            WRITER_PATIENCE_SECONDS,
            "both responses held in the writer's retry queue",
        )
        writer.check()
        assert not writer._unfinished  # the writer has them: the proxy let go
        dead = writer._process
        os.kill(dead.pid, signal.SIGKILL)  # an out-of-memory kill, say
        dead.join(WRITER_PATIENCE_SECONDS)
        remount(config.data_dir, writable=True)
        writer.check()
        assert writer.restarts == 1
        writer.stop()
    counted = counters(config)
    assert counted["captures_lost_writer"] == 2
    assert counted["flows"] == 2
    assert posts(config) == 0
    [(level, message)] = events(config)
    assert level == "warning"
    assert message.endswith(
        "; 2 it held in memory (waiting for the store or for their post) are lost."
    )


def writer_pid(proxy_pid: int) -> int | None:
    """The proxy's capture writer: its child started by multiprocessing's spawn."""
    for pid in set(process_tree(proxy_pid)) - {proxy_pid}:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            return pid
    return None


def test_a_stopped_writer_is_said_replaced_and_what_came_meanwhile_is_stored(
    daemon: tuple[RunningDaemon, object],  # noqa: F811
) -> None:
    running, _ = daemon
    proxy_pid = running.status()["components"]["proxy"]["pid"]
    session = requests.Session()
    session.trust_env = False
    session.proxies = {"https": f"http://127.0.0.1:{running.proxy_port}"}
    ca = str(running.data_dir / "mitmproxy" / "mitmproxy-ca-cert.pem")
    recorded = recorded_requests()
    [profile] = [r for r in recorded if "web_profile_info" in r.url]
    others = [r for r in recorded if r is not profile]

    def browse(request) -> int:  # type: ignore[no-untyped-def]
        return session.request(
            request.method, request.url, data=request.body, verify=ca, timeout=30
        ).status_code

    db = sqlite3.connect(running.data_dir / "instafly.db")

    def stored_posts() -> int:
        return db.execute("SELECT COUNT(*) FROM posts").fetchone()[0]

    assert browse(profile) == 200
    wait_until(lambda: stored_posts() == 20, 60, "the profile's posts")
    hung = wait_until(lambda: writer_pid(proxy_pid), 10, "the capture writer")
    time.sleep(1)  # it has beaten since it started
    with Watcher(running, "child.hung.proxy-writer") as watcher:
        stopped = time.monotonic()
        os.kill(hung, signal.SIGSTOP)
        # The phones notice nothing: the proxy answers; what it captured waits in the pipe.
        assert [browse(r) for r in others] == [200] * 10 + [404]
        new = wait_until(
            lambda: (pid := writer_pid(proxy_pid)) not in (None, hung) and pid,
            40,
            "a new capture writer",
        )
        replaced = time.monotonic()
        wait_until(lambda: stored_posts() == 32, 60, "what came during the hang to be stored")
        stored = time.monotonic()
        wait_until(lambda: len(watcher.seen) == 3, 10, "the hang on /healthz, /metrics and /")
    said = {where: round(when - stopped, 1) for where, when in watcher.seen.items()}
    print(
        f"capture writer SIGSTOP (hang_seconds {HANG_SECONDS}): said after {said}, a new writer"
        f" after {replaced - stopped:.1f} s, everything stored after {stored - stopped:.1f} s"
    )
    for where, after_seconds in said.items():
        assert after_seconds < HANG_SECONDS + 3, where
    with pytest.raises(ProcessLookupError):
        os.kill(hung, 0)  # killed and reaped, not left behind
    assert running.status()["components"]["proxy"]["pid"] == proxy_pid  # only the writer
    assert watcher.healthz is not None and watcher.healthz["status"] == "error"
    [problem] = [p for p in watcher.healthz["problems"] if p["id"] == "child.hung.proxy-writer"]
    assert problem["sentence"].startswith("The capture writer stopped answering for ")
    assert "What to do:" in watcher.card
    # As from a run that never hung (tests/test_capture_store_full.py): the images come after
    # the posts that name them, so they may still be on their way when the 32nd post is in.
    wait_until(
        lambda: db.execute("SELECT COUNT(*) FROM labelled_posts").fetchone()[0] == 3,
        30,
        "the 3 labelled posts (their images stored too)",
    )
    lost = db.execute("SELECT value FROM counters WHERE name = 'captures_lost_writer'").fetchone()
    assert lost is None
    [(replaced,)] = db.execute("SELECT message FROM events WHERE kind = 'writer_replaced'")
    assert replaced.startswith("The capture writer was killed (it had stopped answering")
    wait_until(  # the new writer beats: the problem is gone
        lambda: json.loads(running.get("/healthz")[1])["status"] == "ok",
        15,
        "healthz ok again",
    )
    assert new != hung
    assert "the writer process died" in running.output()

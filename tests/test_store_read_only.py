"""The store on a read-only data folder (a real read-only bind mount), and after it heals.

SQLite opens a database on a read-only folder read-only without saying so, and such a
connection stays read-only after the folder is writable again: a `Database` must notice and
reopen itself, so that the processes that hold one for days (the capture writer, the worker,
the status emitter) heal by themselves.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from helpers import jpeg_bytes, sql_scalar, wait_until
from support_faults import read_only, remount, sample_responses

from instaflyd.capture.flows import CapturedResponse
from instaflyd.capture.writer import write_until_stopped
from instaflyd.capture.writer_state import read_state
from instaflyd.config import build_config
from instaflyd.store import Database, StoreError
from instaflyd.store.events import add_to_counter
from instaflyd.store.faults import transient_fault
from instaflyd.watch.watcher import DropWatcher


def counter(path: Path, name: str) -> int | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
    return None if row is None else row[0]


def test_a_connection_opened_read_only_is_reopened_read_write_once_the_folder_heals(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    path = data / "instafly.db"
    holder = Database(path)  # another process's connection keeps the WAL index (-shm) there
    try:
        with read_only(data):
            db = Database(path)  # SQLite opens it read-only, silently
            try:
                assert db.read_only
                assert sql_scalar(db, "SELECT COUNT(*) FROM posts") == 0  # reads work
                with pytest.raises(sqlite3.OperationalError) as refused, db.transaction() as conn:
                    add_to_counter(conn, "flows", 1)
                assert transient_fault(refused.value) == "read_only"

                remount(data, writable=True)  # the card is writable again
                with db.transaction() as conn:  # no restart, no new Database: it heals itself
                    add_to_counter(conn, "flows", 2)
                assert not db.read_only
                assert counter(path, "flows") == 2
            finally:
                db.close()
    finally:
        holder.close()


def test_a_clean_database_on_a_read_only_folder_is_a_passing_store_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    Database(data / "instafly.db").close()  # closed cleanly: no -wal, no -shm
    with read_only(data):
        with pytest.raises(StoreError) as refused:
            Database(data / "instafly.db")
        assert refused.value.fault == "read_only"
        remount(data, writable=True)
        with Database(data / "instafly.db") as db, db.transaction() as conn:
            add_to_counter(conn, "flows", 1)
    assert counter(data / "instafly.db", "flows") == 1


@pytest.mark.slow
def test_the_capture_writer_started_read_only_stores_everything_once_writable(
    tmp_path: Path,
) -> None:
    config = build_config({"data_dir": str(tmp_path / "data")})
    Database(config.db_path).close()
    responses: list[CapturedResponse] = sample_responses(config.proxy.max_body_bytes)
    inbox: queue.Queue[object] = queue.Queue()
    with read_only(config.data_dir):
        writer = threading.Thread(target=write_until_stopped, args=(config, inbox))
        writer.start()
        try:
            for response in responses:
                inbox.put(response)
            state = wait_until(
                lambda: (s := read_state(config.runtime_dir)) and s.held == len(responses) and s,
                20,
                "every response to wait",
            )
            assert state.fault == "read_only"
            remount(config.data_dir, writable=True)
            wait_until(
                lambda: (s := read_state(config.runtime_dir)) and s.fault is None and not s.held,
                20,
                "the writer to store what waited",
            )
        finally:
            inbox.put(None)
            writer.join(30)
    with sqlite3.connect(config.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM posts").fetchone() == (32,)
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone() == (4,)
        [(message,)] = conn.execute(
            "SELECT message FROM events WHERE kind = 'store_recovered'"
        ).fetchall()
    assert (
        "(the data folder is read-only); 11 captured responses waited and were stored." in message
    )


@pytest.mark.slow
def test_the_drop_folder_watcher_started_read_only_queues_the_photo_once_writable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    config = build_config(
        {"watch": {"drop_dir": str(tmp_path / "drop"), "settle_seconds": 0.2}}, data_dir=data
    )
    Database(config.db_path).close()
    watcher = DropWatcher(config.watch, config.db_path)
    caplog.set_level(logging.WARNING, logger="instafly")
    with read_only(data):
        watcher.start()
        try:
            (tmp_path / "drop").mkdir(exist_ok=True)
            (tmp_path / "drop" / "beach.jpg").write_bytes(jpeg_bytes(64, 64))
            time.sleep(2)  # settled long ago: it cannot be queued while read-only
            assert jobs(config.db_path, immutable=True) == []  # nothing could be queued
            remount(data, writable=True)
            wait_until(lambda: jobs(config.db_path) == ["beach.jpg"], 20, "the photo's job")
        finally:
            watcher.stop()
    faults = [r.getMessage() for r in caplog.records if "drop-folder watcher" in r.getMessage()]
    assert len(faults) == 2, faults  # when it began and when it healed, not one every 5 s
    assert faults[0].startswith("the drop-folder watcher cannot queue photos")
    assert "works again" in faults[1]


def jobs(db_path: Path, immutable: bool = False) -> list[str]:
    """The jobs' file names (`immutable`: read without locks, as a read-only folder needs)."""
    uri = f"file:{db_path}?immutable=1" if immutable else f"file:{db_path}"
    conn = sqlite3.connect(uri, uri=True)
    try:
        return [Path(row[0]).name for row in conn.execute("SELECT input_path FROM jobs")]
    finally:
        conn.close()

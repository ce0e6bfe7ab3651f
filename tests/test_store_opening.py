"""`store.opening.StoreOpening`: the one wait for a store that a passing fault keeps shut.

On real faults: a read-only bind mount of the data folder (a card the kernel protected) and a
small tmpfs filled to the last byte (a full disk). The daemon, the worker and the status
emitter each wait through it; these tests hold the wait itself to its word: it retries until
the cause is gone, says why in a typed record, backs off, ends within a second of its stop
event, and raises at once on what retrying cannot fix.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support_faults import fill, read_only, remount, small_tmpfs

from instaflyd.store import Database, StoreError
from instaflyd.store.opening import StoreOpening, StoreShut


def clean_store(data: Path) -> Path:
    """A store closed cleanly (no -wal, no -shm): on a read-only folder it cannot be opened."""
    path = data / "instafly.db"
    Database(path).close()
    return path


def test_it_retries_until_the_folder_is_writable_and_says_why_meanwhile(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = clean_store(data)
    said: list[StoreShut] = []
    healed: list[StoreShut] = []
    opening = StoreOpening(
        lambda: Database(path), every=0.05, waiting=said.append, opened=healed.append
    )
    stop = threading.Event()
    result: list[bool] = []

    def wait() -> None:  # a connection is used in the thread that opened it
        db = opening.wait(stop)
        result.append(isinstance(db, Database))
        if db is not None:
            db.close()

    with read_only(data):
        waiter = threading.Thread(target=wait)
        waiter.start()
        deadline = time.monotonic() + 5
        while len(said) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(said) >= 3 and result == []  # still trying, not given up
        assert opening.shut is not None and opening.shut.fault == "read_only"
        remount(data, writable=True)
        waiter.join(5)
        assert not waiter.is_alive()
    assert result == [True]
    assert [s.tries for s in said] == list(range(1, len(said) + 1))
    assert {s.fault for s in said} == {"read_only"}
    assert len({s.since for s in said}) == 1  # one wait, dated by its first try
    assert said[0].text == "the data folder is read-only"
    assert said[0].what_to_do.startswith("The SD card or disk has probably developed a fault")
    assert healed == [said[-1]]  # told once, with the last reason
    assert opening.shut is None


def test_a_full_disk_is_reported_as_such_and_the_request_error_says_it(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "data", 2) as data:
        path = clean_store(data)  # a box that ran before, restarted on a full disk
        filler = fill(data)
        said: list[StoreShut] = []
        opening = StoreOpening(lambda: Database(path), waiting=said.append)
        assert opening.try_open() is None
        [shut] = said
        # SQLite says "disk I/O error" (SQLITE_IOERR_SHMSIZE: the -shm cannot grow): a full
        # disk, not a failing card, and the household is told to free space.
        assert shut.error.endswith("cannot open the database: disk I/O error")
        assert shut.fault == "disk_full"
        assert shut.text == "the data folder's disk is full"
        assert shut.what_to_do.startswith("Free some space")
        error = opening.error()
        assert error.fault == "disk_full"
        assert str(error).startswith("the database cannot be opened: ")
        filler.unlink()
        db = opening.try_open()
        assert isinstance(db, Database)
        db.close()
        assert opening.shut is None


def test_the_wait_ends_within_a_second_of_its_stop_event(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = clean_store(data)
    tried = threading.Event()
    opening = StoreOpening(lambda: Database(path), every=60.0, waiting=lambda shut: tried.set())
    stop = threading.Event()
    with read_only(data):
        result: list[Database | None] = []
        waiter = threading.Thread(target=lambda: result.append(opening.wait(stop)))
        waiter.start()
        assert tried.wait(5)  # it tried once and now sleeps for a minute...
        stopping = time.monotonic()
        stop.set()  # ...unless told to stop
        waiter.join(1.0)
        took = time.monotonic() - stopping
        assert not waiter.is_alive() and took < 1.0
    assert result == [None]
    assert StoreOpening(lambda: Database(path)).wait(stop) is None  # stopped before it began


def test_it_backs_off_doubling_up_to_its_limit_and_starts_over_after_opening(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    path = clean_store(data)
    now = [100.0]
    opening = StoreOpening(lambda: Database(path), every=2.0, at_most=10.0, clock=lambda: now[0])
    with read_only(data):
        delays = []
        for _ in range(5):
            assert opening.due()
            assert opening.try_open() is None
            delays.append(opening.next_try - now[0])
            assert not opening.due()
            now[0] = opening.next_try
        assert delays == [2.0, 4.0, 8.0, 10.0, 10.0]
        remount(data, writable=True)
        db = opening.try_open()
        assert isinstance(db, Database)
        db.close()
    with read_only(data):  # a new outage starts from the short interval again
        assert opening.try_open() is None
        assert opening.next_try - now[0] == 2.0
        assert opening.shut is not None and opening.shut.tries == 1


def test_what_retrying_cannot_fix_raises_at_once(tmp_path: Path) -> None:
    path = tmp_path / "instafly.db"
    path.write_bytes(b"this is not a database, and waiting will not make it one" * 100)
    said: list[StoreShut] = []
    opening = StoreOpening(lambda: Database(path), waiting=said.append)
    with pytest.raises(StoreError) as raised:
        opening.wait(threading.Event())
    assert raised.value.fault is None
    assert said == [] and opening.shut is None
